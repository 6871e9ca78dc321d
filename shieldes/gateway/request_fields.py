"""Reading a model route's request body: its bytes within the limit, decoded as a JSON object, and
its common fields checked, each refusal a 400 that names the field and what it must be."""

from __future__ import annotations

from typing import Any, NoReturn

import orjson
from aiohttp import web

from shieldes.errors import BodyTooLarge, InvalidRequest
from shieldes.gateway.http1 import decompressed
from shieldes.gateway.top_level import malformed_json
from shieldes.providers.base import Body, Operation

MAX_MODEL_NAME = 256
_TEXT_OR_PARTS = (str, list)  # (a tuple: `str | list` is built anew at every evaluation, per message)


MODEL_BODY = '{"model": ..., ...}'  # what a body of the model routes starts with


async def read_json(request: web.Request, max_bytes: int, example: str = MODEL_BODY) -> tuple[Body, bytes]:
    raw = await read_body(request, max_bytes)
    return json_object(raw, example), raw


def json_object(raw: bytes, example: str = MODEL_BODY) -> Body:
    """The body `raw` decoded whole: a JSON object, or a 400 naming what is wrong with it (`example`:
    an object the route takes, shown when the body is some other JSON value)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise malformed_json(exc) from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"the request body must be a JSON object, e.g. {example}")
    return data


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request's body bytes, decompressed, within `max_bytes` and not blank."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(f"request body is {declared} bytes; the limit is {max_bytes}: send a smaller request")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(f"request body exceeds the limit of {max_bytes} bytes; send a smaller request") \
            from None
    except web.RequestPayloadError as exc:  # a broken chunked body, cut off by the client
        raise InvalidRequest(f"the request body could not be read ({str(exc).strip()[:200]}); send it again "
                             "with a correct Content-Length or chunked encoding") from None
    if isinstance(request, web.BaseRequest):
        # aiohttp hands the body over as sent (the runner does not decompress it), so an
        # encoding it cannot decode is a 400 in the API's shape, as on the front's routes.
        raw = decompressed(raw, request.headers.get("Content-Encoding", "").strip().lower(), max_bytes)
        if len(raw) > max_bytes:
            raise BodyTooLarge(f"request body exceeds the limit of {max_bytes} bytes once decompressed; "
                               "send a smaller request")
    if not raw.strip():
        raise InvalidRequest("empty request body: send a JSON object (Content-Type: application/json)")
    return raw


def body_field(body: Body, name: str, types: type | tuple[type, ...], what: str, *,
           required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"missing required field {name!r}: {what}", param=name)
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InvalidRequest(f"field {name!r} has the wrong type: {what}", param=name)
    if not isinstance(value, types):
        raise InvalidRequest(f"field {name!r} has the wrong type: {what}", param=name)
    return value


def refuse_field(body: Body, name: str, what: str) -> NoReturn:
    """The refusal of a field that is not what it must be: missing when absent, else of the wrong
    type (never called missing: the user would look for a field they did send)."""
    if body.get(name) is None:
        raise InvalidRequest(f"missing required field {name!r}: {what}", param=name)
    raise InvalidRequest(f"field {name!r} has the wrong type: {what}", param=name)


def model_field(body: Body) -> str:
    model = body_field(body, "model", str, "a model name string, e.g. \"gpt-4o\"", required=True)
    if not model.strip() or len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(f"field 'model' must be a non-empty model name of at most {MAX_MODEL_NAME} characters "
                             "(see GET /v1/models)", param="model")
    return str(model)


def max_tokens_of(body: Body) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body_field(body, name, int, "a positive integer")
        if value is not None:
            if value < 1:
                raise InvalidRequest(f"field {name!r} must be a positive integer", param=name)
            return int(value)
    return None


def choices_of(body: Body, op: Operation) -> int:
    """How many completions the request asks for (`n`; a completions request's `best_of`, which
    the upstream generates and bills in full): each may run to max_tokens, and the budget
    estimate holds them all, so a wrong value is refused here rather than guessed at."""
    most = 1
    for name in ("n", "best_of") if op == "completions" else ("n",):
        value = body_field(body, name, int, "a positive integer")
        if value is not None:
            if value < 1:
                raise InvalidRequest(f"field {name!r} must be a positive integer (the number of completions)",
                                     param=name)
            most = max(most, int(value))
    return most


def stream_flag(body: Body) -> bool:
    return bool(body_field(body, "stream", bool, "true or false"))


def messages_of(body: Body) -> list[Any]:
    messages = body_field(body, "messages", list, "a non-empty list of message objects", required=True)
    if not messages:
        raise InvalidRequest("field 'messages' must be a non-empty list of message objects", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string 'role'",
                                 param=f"messages[{i}].role" if isinstance(m, dict) else f"messages[{i}]")
        content = m.get("content")
        if content is not None and not isinstance(content, _TEXT_OR_PARTS):
            raise InvalidRequest(f"messages[{i}].content must be a string or a list of content parts",
                                 param=f"messages[{i}].content")
    return list(messages)


def client_wants_usage(body: Body) -> bool:
    options = body_field(body, "stream_options", dict, "an object such as {\"include_usage\": true}")
    if not options:
        return False
    wants = options.get("include_usage")
    if wants is not None and not isinstance(wants, bool):  # as OpenAI refuses it: not guessed at
        raise InvalidRequest("field 'stream_options.include_usage' has the wrong type: true or false",
                             param="stream_options.include_usage")
    return wants is True
