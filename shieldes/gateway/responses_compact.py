"""POST /v1/responses/compact: a conversation compacted as OpenAI's endpoint answers it (the
openai SDK's `client.responses.compact()`): its user messages, then one `compaction` item that
later turns send in place of the history. It runs as a turn whose input ends with the compaction
trigger (responses/compaction.py), so every deployment can serve it: OpenAI compacts natively,
any other by the model's summary. Admitted, bounded and billed as a turn; nothing is stored."""

from __future__ import annotations

import time

from aiohttp import web

from shieldes.errors import InvalidRequest, UpstreamError
from shieldes.gateway.middleware import record_of, request_id
from shieldes.gateway.request_fields import read_json
from shieldes.gateway.responses_routes import RESPONSES, Turn, budget_bounds, history_of, token_usage
from shieldes.gateway.routes import GATEWAY, authenticate, json_response
from shieldes.responses.compaction import TRIGGER, compacted_output
from shieldes.responses.objects import ContextOf, ResponsesUsage
from shieldes.responses.request import parse_request, upstream_body
from shieldes.responses.upstream import Answer
from shieldes.usage.tokens import estimate_output_tokens, prompt_bytes

PATH = "/v1/responses/compact"


async def compact_response(request: web.Request) -> web.StreamResponse:
    gw, key = request.app[GATEWAY], authenticate(request)
    body, raw = await read_json(request, gw.settings.max_body_bytes)
    if body.get("stream"):
        raise InvalidRequest("compact answers JSON, not events: send it without `stream`", param="stream")
    if body.get("background"):
        raise InvalidRequest("compact answers at once, it does not run in the background: send it without "
                             "`background`", param="background")
    if body.get("conversation") is not None:
        raise InvalidRequest("compact takes `input`, or `previous_response_id` and `input`, not `conversation`: "
                             "send the conversation's items as `input`", param="conversation")
    req = parse_request(body)
    rec = record_of(request)
    if rec is not None:
        rec.model, rec.stream = req.model, False
    route = gw.route(key, req.model)
    history = await history_of(request, req, key.id)
    items = history.items + req.input
    sent = upstream_body(dict(body, store=False), [], [*items, TRIGGER])
    size = prompt_bytes(raw) + history.size
    now = int(time.time())
    ctx = ContextOf(body, False, now, req.model)
    res, cap = gw.admit(key, route, size, req.max_output_tokens, "responses", service_tier=body.get("service_tier"),
                        tools=body.get("tools"), max_tool_calls=body.get("max_tool_calls"))
    sent = {**sent, **budget_bounds(gw, key, route, body, cap)}  # (as a turn's: its hold is a real bound)
    turn = Turn(gw, request.app[RESPONSES], key, route, res, size, req.input, None, False, rec)
    try:
        outcome, served = await gw.responses(route, sent, ctx, False, None, rec=rec)
    except BaseException:
        gw.meter.release(res)
        raise
    assert isinstance(outcome, Answer)  # (not streamed)
    output = estimate_output_tokens(outcome.response) if outcome.usage is None else 0
    usage = token_usage(outcome.usage, size, output)
    turn.finish(served, None, usage)  # the tokens were spent, whatever came back
    compactions = [item for item in outcome.response.get("output") or []
                   if isinstance(item, dict) and item.get("type") == "compaction"]
    if len(compactions) != 1:
        raise UpstreamError(f"deployment {served.deployment.name!r} answered the compaction with "
                            f"{len(compactions)} compaction items instead of one: it does not compact "
                            "conversations; serve this model with --responses translate, which compacts by "
                            "the model's summary")
    billed = ResponsesUsage(usage.prompt_tokens, usage.completion_tokens, usage.cache_read_tokens,
                            usage.reasoning_tokens or 0, usage.cache_write_tokens)
    return json_response({"id": ctx.context.id, "object": "response.compaction", "created_at": now,
                          "output": compacted_output(items, compactions[0]), "usage": billed.to_dict()},
                         request_id(request), {**res.headers, **outcome.headers})


def add_compact_route(app: web.Application) -> None:
    app.router.add_post(PATH, compact_response)
