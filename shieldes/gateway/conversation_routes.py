"""HTTP handlers of the Conversations API: /v1/conversations and its items, in the openai SDK's
object shapes. A conversation belongs to the key that created it; to any other key it is a 404."""

from __future__ import annotations

from aiohttp import web

from shieldes.errors import InvalidRequest
from shieldes.gateway.middleware import request_id
from shieldes.gateway.request_fields import read_json
from shieldes.gateway.responses_routes import CONVERSATIONS, list_limit
from shieldes.gateway.routes import GATEWAY, authenticate, json_response
from shieldes.responses.conversations import (
    Conversations,
    conversation_object,
    parse_items,
    parse_metadata,
    shown_item,
)
from shieldes.responses.objects import ENCRYPTED, Body


async def _body(request: web.Request) -> Body:
    if not request.can_read_body:
        return {}
    body, _raw = await read_json(request, request.app[GATEWAY].settings.max_body_bytes)
    return body


def _ctx(request: web.Request) -> tuple[Conversations, str, str]:
    return request.app[CONVERSATIONS], authenticate(request).id, request.match_info.get("id", "")


def _encrypted(request: web.Request) -> bool:
    include = request.query.getall("include", []) + request.query.getall("include[]", [])
    return ENCRYPTED in include


async def create_conversation(request: web.Request) -> web.StreamResponse:
    convs, key_id, _ = _ctx(request)
    body = await _body(request)
    row = await convs.create(key_id, parse_metadata(body.get("metadata")), parse_items(body.get("items"), False))
    return json_response(conversation_object(row), request_id(request))


async def get_conversation(request: web.Request) -> web.StreamResponse:
    convs, key_id, conv = _ctx(request)
    return json_response(conversation_object(await convs.get(conv, key_id)), request_id(request))


async def update_conversation(request: web.Request) -> web.StreamResponse:
    convs, key_id, conv = _ctx(request)
    body = await _body(request)
    if "metadata" not in body:
        raise InvalidRequest("field 'metadata' is required: the conversation's new metadata, an object of up "
                             "to 16 string values", param="metadata")
    row = await convs.update(conv, key_id, parse_metadata(body["metadata"]))
    return json_response(conversation_object(row), request_id(request))


async def delete_conversation(request: web.Request) -> web.StreamResponse:
    convs, key_id, conv = _ctx(request)
    await convs.delete(conv, key_id)
    return json_response({"id": conv, "object": "conversation.deleted", "deleted": True}, request_id(request))


def _list(data: list[Body], has_more: bool) -> Body:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}


async def add_items(request: web.Request) -> web.StreamResponse:
    convs, key_id, conv = _ctx(request)
    body = await _body(request)
    items = parse_items(body.get("items"), True)
    if not items:
        raise InvalidRequest("field 'items' is empty: send at least one item", param="items")
    rows = await convs.add(conv, key_id, items)
    return json_response(_list([shown_item(r, _encrypted(request)) for r in rows], False), request_id(request))


async def list_items(request: web.Request) -> web.StreamResponse:
    convs, key_id, conv = _ctx(request)
    limit = list_limit(request.query.get("limit"))
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("query parameter 'order' must be asc or desc", param="order")
    rows, more = await convs.page(conv, key_id, limit, order == "desc", request.query.get("after"))
    return json_response(_list([shown_item(r, _encrypted(request)) for r in rows], more), request_id(request))


async def get_item(request: web.Request) -> web.StreamResponse:
    convs, key_id, conv = _ctx(request)
    row = await convs.item(conv, key_id, request.match_info["item_id"])
    return json_response(shown_item(row, _encrypted(request)), request_id(request))


async def delete_item(request: web.Request) -> web.StreamResponse:
    """OpenAI answers a deleted item with the conversation it was in."""
    convs, key_id, conv = _ctx(request)
    row = await convs.delete_item(conv, key_id, request.match_info["item_id"])
    return json_response(conversation_object(row), request_id(request))


def add_conversation_routes(app: web.Application) -> None:
    # the forms without /v1 come from route_aliases.add_unversioned_aliases
    app.router.add_post("/v1/conversations", create_conversation)
    app.router.add_get("/v1/conversations/{id}", get_conversation)
    app.router.add_post("/v1/conversations/{id}", update_conversation)
    app.router.add_delete("/v1/conversations/{id}", delete_conversation)
    app.router.add_post("/v1/conversations/{id}/items", add_items)
    app.router.add_get("/v1/conversations/{id}/items", list_items)
    app.router.add_get("/v1/conversations/{id}/items/{item_id}", get_item)
    app.router.add_delete("/v1/conversations/{id}/items/{item_id}", delete_item)
