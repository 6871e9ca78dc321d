"""The model listing: GET /v1/models and /v1/models/{model} in the shape the client speaks (OpenAI's,
Anthropic's when it sends `anthropic-version`, Google's for Google's clients and under /v1beta),
each listing only the models the key may use."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shieldes.errors import InvalidRequest, NotFound, ShieldesError
from shieldes.gateway.google_pages import google_page
from shieldes.gateway.middleware import google_client, request_id
from shieldes.gateway.routes import GATEWAY, authenticate, json_response


async def list_models(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    models = gw.models_for(key)
    if google_client(request):  # the google-genai SDK's models.list(), which follows nextPageToken
        names, after = google_page([m for m, _owner in models], request.query.get("pageSize"),
                                   request.query.get("pageToken"))
        page: dict[str, Any] = {"models": [google_model(m) for m in names]}
        if after is not None:
            page["nextPageToken"] = after
        return json_response(page, request_id(request))
    if "anthropic-version" in request.headers:  # the anthropic SDK's models.list()
        query = request.query
        ids, has_more = anthropic_page([m for m, _owner in models], _page_limit(query.get("limit")),
                                       query.get("after_id"), query.get("before_id"))
        listed = [_anthropic_model(m) for m in ids]
        return json_response({"data": listed, "has_more": has_more, "first_id": ids[0] if ids else None,
                              "last_id": ids[-1] if ids else None}, request_id(request))
    data = [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m, owner in models]
    return json_response({"object": "list", "data": data}, request_id(request))


def _page_limit(given: str | None) -> int | None:
    if given is None:
        return None  # every model: a client that asks for no page gets the whole list
    if not given.isdigit() or not 1 <= int(given) <= 1000:
        raise InvalidRequest(f"query parameter 'limit' must be a whole number from 1 to 1000, got {given[:40]!r}")
    return int(given)


def anthropic_page(ids: list[str], limit: int | None, after_id: str | None,
                   before_id: str | None) -> tuple[list[str], bool]:
    """A page of Anthropic's model list (ids in order): the `limit` ids after `after_id`, or the
    `limit` ids just before `before_id`, and whether more lie beyond the page in that direction."""
    if after_id is not None:
        ids = ids[ids.index(after_id) + 1:] if after_id in ids else [i for i in ids if i > after_id]
    if before_id is not None:
        ids = ids[:ids.index(before_id)] if before_id in ids else [i for i in ids if i < before_id]
        if limit is not None and len(ids) > limit:
            return ids[-limit:], True
        return ids, False
    if limit is not None and len(ids) > limit:
        return ids[:limit], True
    return ids, False


# Every Gemini API method the gateway serves takes any model of the key's (a client that looks for
# `embedContent` before embedding finds it); whether the upstream model does it is the upstream's answer.
GEMINI_METHODS = ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents")


def google_model(model: str) -> dict[str, Any]:
    """A model in the Gemini API's shape (google-genai's models.list() and get())."""
    return {"name": f"models/{model}", "version": "001", "displayName": model, "description": "",
            "supportedGenerationMethods": list(GEMINI_METHODS)}


def _anthropic_model(model: str) -> dict[str, Any]:
    return {"type": "model", "id": model, "display_name": model, "created_at": "1970-01-01T00:00:00Z"}


async def get_model(request: web.Request) -> web.StreamResponse:
    """One model the key may use, in the OpenAI shape (Anthropic's when the client sends
    `anthropic-version`, as the anthropic SDK does; Google's for Google's clients and under
    /v1beta); 404 when unknown or not allowed to the key."""
    gw = request.app[GATEWAY]
    key = authenticate(request)
    model = request.match_info["model"].removeprefix("models/")  # Google's clients say models/{model}
    owner = dict(gw.models_for(key)).get(model)
    if owner is None:
        try:
            owner = gw.route(key, model).deployments[0].kind
        except ShieldesError:
            owner = None
    if owner is None:
        listing = "GET /v1beta/models" if google_client(request) else "GET /v1/models"
        raise NotFound(f"model {model!r} does not exist or this key may not use it; list the models "
                       f"your key may use with {listing}")
    if "anthropic-version" in request.headers:
        return json_response(_anthropic_model(model), request_id(request))
    if google_client(request):
        return json_response(google_model(model), request_id(request))
    return json_response({"id": model, "object": "model", "created": 0, "owned_by": owner}, request_id(request))


def add_model_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
