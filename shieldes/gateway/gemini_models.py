"""Which model a Gemini API call names (in its path), the key's route for it, and whether the
route's deployments take the call as it is (gemini_native) or translated."""

from __future__ import annotations

from aiohttp import web

from shieldes.errors import InvalidRequest
from shieldes.gateway.middleware import record_of
from shieldes.gateway.request_fields import MAX_MODEL_NAME
from shieldes.gateway.service import Gateway
from shieldes.projections.state import VirtualKey
from shieldes.providers.base import ModelDialects
from shieldes.providers.gemini_native import GenerateContentUpstream
from shieldes.routing.router import Route

LIST_PATH = "GET /v1beta/models"  # the model list Google's clients call


def model_of(request: web.Request) -> str:
    model = request.match_info["model"].removeprefix("models/")
    if not model.strip() or len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(f"the path must name a model of at most {MAX_MODEL_NAME} characters: "
                             f"/v1beta/models/{{model}}:generateContent (see {LIST_PATH})")
    rec = record_of(request)
    if rec is not None:  # a refusal's row names it too (an unknown model, a limit), as on the other routes
        rec.model = model
    return model


def route_for(gw: Gateway, key: VirtualKey, model: str) -> Route:
    """The key's route for `model`; a refusal names the model list these clients call."""
    return gw.route(key, model, LIST_PATH)


def passes_through(gw: Gateway, route: Route) -> bool:
    """Whether any of the route's targets takes the request as it is (then it is checked by the
    translation only when a translated target is tried)."""
    for t in route.targets:
        provider = gw.providers.get(t.deployment.kind)
        if isinstance(provider, ModelDialects):
            provider = provider.for_model(t.model)
        if isinstance(provider, GenerateContentUpstream):
            return True
    return False


