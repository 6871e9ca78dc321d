"""The Responses API over a WebSocket (GET /v1/responses upgraded), through the openai SDK's
`responses.connect()` and a raw aiohttp client, against a real node: events as text messages,
continuation of an unstored response by previous_response_id, `generate: false`, lanes (run at
once, each in order, each remembering its latest response), errors
that leave the connection open, the key checked at the handshake and per message, usage counted,
and a draining node closing its sockets."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from shieldes.gateway.responses_socket import SOCKETS
from shieldes.projections.commands import RevokeKey
from shieldes.projections.shared_commands import UpdateProvider
from tests.integration.gateway_harness import Harness, harness, wait_until
from tests.responses_schema import check_event

HELLO = "Hello from the fake upstream"


async def _turn(conn: Any, **create: Any) -> list[Any]:
    """One response.create on an SDK connection and its events, through the terminal one."""
    await conn.send({"type": "response.create", **create})
    events = []
    async for event in conn:
        events.append(event)
        if event.type in ("response.completed", "response.failed", "response.incomplete", "error"):
            return events
    raise AssertionError("the connection closed before the response ended")


async def _raw(ws: aiohttp.ClientWebSocketResponse, message: Any) -> list[dict[str, Any]]:
    """One message on a raw connection and the events it gets, through the terminal one."""
    await (ws.send_str(message) if isinstance(message, str) else ws.send_json(message))
    events = []
    while True:
        event = json.loads(await ws.receive_str(timeout=10))
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "error", "response.steer.failed",
                             "response.inject.failed"):
            return events


def _socket_url(h: Harness) -> str:
    return h.base.replace("http://", "ws://") + "/v1/responses"


@pytest.mark.parametrize("mode", ["translate", "native"])
async def test_sdk_connection_streams_turns_and_continues_an_unstored_response(database_url: str, mode: str) -> None:
    # an upstream's id of an unstored response is polled for responses_read_wait (2 s by default) before
    # previous_response_not_found: no other node here could be writing it
    async with harness(database_url, responses_read_wait=0.2) as h:
        if mode == "native":
            await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app")
        await h.sync()
        upstream_path = "/v1/responses" if mode == "native" else "/v1/chat/completions"
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        async with client.responses.connect() as conn:
            first = await _turn(conn, model="gpt-4o", input="say hello to me", instructions="be brief", store=False)
            types = [e.type for e in first]
            assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
            assert "".join(e.delta for e in first if e.type == "response.output_text.delta") == HELLO
            assert [e.sequence_number for e in first] == list(range(len(first)))
            for e in first:
                check_event(e.model_dump(mode="json", exclude_unset=True))
            done = first[-1].response
            assert done.output_text == HELLO and done.usage is not None and done.usage.output_tokens == 5

            # the next turn sends only its new item: the node sends the upstream the whole conversation
            second = await _turn(conn, model="gpt-4o", previous_response_id=done.id, store=False,
                                 input=[{"role": "user", "content": "and again"}])
            assert second[-1].type == "response.completed" and second[-1].response.output_text == HELLO
            sent = h.upstream.last(upstream_path).body
            if mode == "native":
                texts = [json.dumps(item) for item in sent["input"]]
                assert "previous_response_id" not in sent and len(sent["input"]) == 3
                assert "say hello to me" in texts[0] and HELLO in texts[1] and "and again" in texts[2]
            else:
                # (instructions are the request's own: a continuation does not carry them over)
                assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
                assert sent["messages"][1]["content"] == HELLO and sent["messages"][2]["content"] == "and again"

        # the memory is the connection's: another connection cannot continue an unstored response
        async with client.responses.connect() as conn:
            events = await _turn(conn, model="gpt-4o", previous_response_id=done.id, input="more")
            assert events[-1].type == "error" and events[-1].status == 400
            assert events[-1].error.code == "previous_response_not_found"

        await h.flush()
        requests, _prompt, completion, _cost = h.usage_totals()["app"]
        assert requests == 2 and completion == 10


async def test_errors_are_events_and_the_connection_stays_open(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app", models=("gpt-4o",))
        await h.sync()
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession() as s, s.ws_connect(_socket_url(h), headers=headers) as ws:
            assert ws._response.headers["x-request-id"]  # the handshake's answer names its request too
            (refused,) = await _raw(ws, {"type": "response.create", "model": "gpt-4o-mini", "input": "hi"})
            assert refused["type"] == "error" and refused["status"] == 403
            assert refused["error"]["code"] == "model_not_allowed" and "gpt-4o-mini" in refused["error"]["message"]
            (bad,) = await _raw(ws, "{not json")
            assert bad["status"] == 400 and "malformed JSON" in bad["error"]["message"]
            (unknown,) = await _raw(ws, {"type": "session.update"})
            assert unknown["status"] == 400 and unknown["error"]["code"] == "unsupported_event_type"
            assert unknown["error"]["param"] == "type" and bad["error"]["param"] is None
            # each refusal names a request id of its own, and says not to send it again as it is
            assert bad["headers"]["x-request-id"] != unknown["headers"]["x-request-id"]
            assert bad["headers"]["x-should-retry"] == unknown["headers"]["x-should-retry"] == "false"
            assert refused["headers"]["x-request-id"]
            (missing,) = await _raw(ws, {"type": "response.create", "model": "gpt-4o"})
            assert missing["status"] == 400 and missing["error"]["param"] == "input"
            (steer,) = await _raw(ws, {"type": "response.steer", "previous_response_id": "resp_x", "input": "go"})
            assert steer["type"] == "response.steer.failed" and steer["error"]["code"] == "steering_not_supported"
            assert steer["steer"] == {"input": "go", "previous_response_id": "resp_x"} and "stream_id" not in steer
            (steer,) = await _raw(ws, {"type": "response.steer", "previous_response_id": "resp_x", "input": "go",
                                       "stream_id": "lane-2"})
            assert steer["type"] == "response.steer.failed" and steer["stream_id"] == "lane-2"
            output = [{"type": "function_call_output", "call_id": "call_1", "output": "42"}]
            (inject,) = await _raw(ws, {"type": "response.inject", "response_id": "resp_x", "input": output})
            assert inject["type"] == "response.inject.failed" and inject["input"] == output
            assert inject["response_id"] == "resp_x" and "next response.create" in inject["error"]["message"]
            # lanes: each event of a response names the stream_id its response.create gave
            events = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "input": "hi",
                                     "stream_id": "lane-1"})
            assert events[-1]["type"] == "response.completed" and {e["stream_id"] for e in events} == {"lane-1"}

            # a key revoked mid-connection is refused at its next message
            await h.admin(RevokeKey("app"))
            await h.sync()
            (revoked,) = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "input": "hi"})
            assert revoked["status"] == 401

        # the handshake: a wrong key is an HTTP 401; a GET that asks no upgrade is the 405 of a POST path
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused_key:
                await s.ws_connect(_socket_url(h), headers={"Authorization": "Bearer sk-shd-wrong"})
            assert refused_key.value.status == 401
            async with s.get(h.base + "/v1/responses", headers=headers) as r:
                assert r.status == 405 and "takes POST" in (await r.json())["error"]["message"]


async def _events(ws: aiohttp.ClientWebSocketResponse, terminals: int) -> list[dict[str, Any]]:
    """Events of a raw connection as they come, through `terminals` terminal ones."""
    events: list[dict[str, Any]] = []
    while terminals:
        event = json.loads(await ws.receive_str(timeout=20))
        events.append(event)
        terminals -= event["type"] in ("response.completed", "response.failed", "error")
    return events


async def test_lanes_run_at_once_and_each_answers_in_order(database_url: str) -> None:
    """OpenAI's multiplexing: the messages of one stream_id are answered one after the other, and
    stream_ids run at once (an answer on one lane does not wait for another lane's)."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        h.upstream.inject("/v1/chat/completions", chunk_delay=0.1, times=None)  # about a second an answer
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession() as s, s.ws_connect(_socket_url(h), headers=headers) as ws:
            for lane, text in (("a", "first on a"), ("b", "first on b"), ("a", "second on a")):
                await ws.send_json({"type": "response.create", "model": "gpt-4o", "input": text, "stream_id": lane})
            events = await _events(ws, 3)
        assert all(e["type"] != "error" for e in events), events
        order = [(e["stream_id"], e["type"]) for e in events if e["type"] in ("response.created", "response.completed")]
        assert order.index(("b", "response.created")) < order.index(("a", "response.completed")), order
        created_a = [i for i, x in enumerate(order) if x == ("a", "response.created")]
        completed_a = [i for i, x in enumerate(order) if x == ("a", "response.completed")]
        assert len(created_a) == 2 and completed_a[0] < created_a[1], order  # lane a: one at a time
        inputs = [json.dumps(r.body["messages"]) for r in h.upstream.requests_to("/v1/chat/completions")]
        assert "second on a" in inputs[2] and "second on a" not in inputs[0] + inputs[1]


async def test_sdk_lanes_answer_at_once(database_url: str) -> None:
    """The openai SDK's own `conn.response.create(stream_id=...)`: two lanes, both answered, each
    event parsed with its lane."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        h.upstream.inject("/v1/chat/completions", chunk_delay=0.05, times=None)
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        async with client.responses.connect() as conn:
            await conn.response.create(model="gpt-4o", input="on lane a", stream_id="a", store=False)
            await conn.response.create(model="gpt-4o", input="on lane b", stream_id="b", store=False)
            lanes: list[str] = []
            done: dict[str, Any] = {}
            async for event in conn:
                assert event.type != "error", event
                lanes.append(event.stream_id)  # type: ignore[union-attr]
                if event.type == "response.completed":
                    done[event.stream_id] = event.response  # type: ignore[attr-defined]
                    if len(done) == 2:
                        break
        assert done["a"].output_text == HELLO and done["b"].output_text == HELLO
        assert lanes.index("b") < len(lanes) - lanes[::-1].index("a") - 1  # b began before a ended


async def test_each_lane_continues_its_latest_response_and_another_lane_may_fork_it(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession() as s, s.ws_connect(_socket_url(h), headers=headers) as ws:
            a1 = (await _raw(ws, {"type": "response.create", "model": "gpt-4o", "input": "a one", "store": False,
                                  "stream_id": "a"}))[-1]["response"]
            b1 = (await _raw(ws, {"type": "response.create", "model": "gpt-4o", "input": "b one", "store": False,
                                  "stream_id": "b"}))[-1]["response"]
            # lane a continues its own unstored response though lane b answered since
            a2 = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "input": "a two", "store": False,
                                 "stream_id": "a", "previous_response_id": a1["id"]})
            assert a2[-1]["type"] == "response.completed", a2[-1]
            sent = h.upstream.last("/v1/chat/completions").body["messages"]
            assert [m["content"] for m in sent if m["role"] == "user"] == ["a one", "a two"]
            # a new lane forks lane b's latest response
            c1 = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "input": "c one", "store": False,
                                 "stream_id": "c", "previous_response_id": b1["id"]})
            assert c1[-1]["type"] == "response.completed", c1[-1]
            sent = h.upstream.last("/v1/chat/completions").body["messages"]
            assert [m["content"] for m in sent if m["role"] == "user"] == ["b one", "c one"]
            # a lane's memory holds its latest response only: a1 was followed by a2 on lane a
            stale = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "input": "again", "store": False,
                                    "previous_response_id": a1["id"]})
            assert stale[-1]["type"] == "error" and stale[-1]["status"] == 400
            assert stale[-1]["error"]["code"] == "previous_response_not_found"


async def test_a_draining_node_ends_the_answers_under_way_then_closes(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        h.upstream.inject("/v1/chat/completions", chunk_delay=0.1, times=None)
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession() as s, s.ws_connect(_socket_url(h), headers=headers) as ws:
            await ws.send_json({"type": "response.create", "model": "gpt-4o", "input": "hi", "stream_id": "a"})
            assert json.loads(await ws.receive_str(timeout=10))["type"] == "response.created"
            assert h.node.http is not None
            await h.node.http.app[SOCKETS].close_all()
            await ws.send_json({"type": "response.create", "model": "gpt-4o", "input": "hi", "stream_id": "b"})
            events = await _events(ws, 2)
            (refused,) = [e for e in events if e.get("stream_id") == "b"]
            assert refused["status"] == 503 and refused["error"]["code"] == "node_draining"
            assert [e["type"] for e in events if e.get("stream_id") == "a"][-1] == "response.completed"
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == aiohttp.WSCloseCode.GOING_AWAY


async def test_generate_false_prepares_a_turn_without_calling_a_model(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        headers = {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession() as s, s.ws_connect(_socket_url(h), headers=headers) as ws:
            prepared = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "generate": False,
                                       "instructions": "be brief", "input": "the context, sent once"})
            assert [e["type"] for e in prepared] == ["response.created", "response.completed"]
            response = prepared[-1]["response"]
            assert response["status"] == "completed" and response["output"] == []
            assert not h.upstream.requests
            events = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "instructions": "be brief",
                                     "previous_response_id": response["id"], "input": "now answer"})
            assert events[-1]["type"] == "response.completed"
            sent = h.upstream.last("/v1/chat/completions").body
            assert [m["content"] for m in sent["messages"]] == ["be brief", "the context, sent once", "now answer"]
        await h.flush()
        assert h.usage_totals()["app"][0] == 1  # the prepared turn called no model and bills nothing


async def test_a_draining_node_closes_its_idle_sockets_going_away(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        async with aiohttp.ClientSession() as s, \
                s.ws_connect(_socket_url(h), headers={"Authorization": f"Bearer {secret}"}) as ws:
            events = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "input": "hi"})
            assert events[-1]["type"] == "response.completed"
            assert h.node.http is not None
            await h.node.http.app[SOCKETS].close_all()
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
        # the socket counts as a request of its own (1xx), but its lifetime is no request's latency
        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            text = await r.text()
        assert 'shieldes_requests_total{route="/v1/responses",status="1xx"} 1.0' in text
        # the one response.create (streamed over the socket)
        assert 'shieldes_request_seconds_count{route="/v1/responses",stream="true"} 1.0' in text


async def test_a_client_gone_mid_answer_is_billed_what_the_upstream_served(database_url: str, caplog: Any) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        h.upstream.inject("/v1/chat/completions", token_delay=0.1, times=None)
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(_socket_url(h), headers={"Authorization": f"Bearer {secret}"})
            await ws.send_json({"type": "response.create", "model": "gpt-4o", "input": "hi"})
            assert json.loads(await ws.receive_str(timeout=10))["type"] == "response.created"
            await ws.close()  # mid-answer
        await h.flush()
        await wait_until(lambda: h.usage_totals().get("app", (0,))[0] == 1, timeout=10)
        _requests, _prompt, completion, _cost = h.usage_totals()["app"]
        assert completion == 5  # the upstream's count, read to its end after the client left
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_tool_loop_continued_on_the_socket_checks_each_turns_own_items_against_the_history(
        database_url: str) -> None:
    """Each turn sends only its new items; the node knows of the remembered conversation the calls it
    made and whether their ids fit, so a turn's output answering a call of an earlier turn goes
    through, one answering none is refused in the gateway's words before any upstream call, and a
    call id too long for the native upstream (from a turn before) is fitted in every later turn."""
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app")
        await h.sync()
        headers = {"Authorization": f"Bearer {secret}"}
        tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]
        long_id = "call_" + "x" * 70
        async with aiohttp.ClientSession() as s, s.ws_connect(_socket_url(h), headers=headers) as ws:
            first = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "store": False, "tools": tools,
                                    "input": [{"type": "function_call", "call_id": long_id, "name": "lookup",
                                               "arguments": "{}"},
                                              {"type": "function_call_output", "call_id": long_id, "output": "1"},
                                              {"role": "user", "content": "look it up again"}]})
            done = first[-1]["response"]
            (call,) = done["output"]
            assert first[-1]["type"] == "response.completed" and call["type"] == "function_call"

            second = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "store": False,
                                     "tools": tools, "previous_response_id": done["id"],
                                     "input": [{"type": "function_call_output", "call_id": call["call_id"],
                                                "output": "42"}]})
            assert second[-1]["type"] == "response.completed"
            sent = h.upstream.last("/v1/responses").body["input"]
            assert [item.get("type", "message") for item in sent] == \
                ["function_call", "function_call_output", "message", "function_call", "function_call_output"]
            assert sent[0]["call_id"] == sent[1]["call_id"] != long_id and len(sent[0]["call_id"]) <= 64
            assert sent[3]["call_id"] == sent[4]["call_id"] == call["call_id"]

            calls = len(h.upstream.requests_to("/v1/responses"))
            (refused,) = await _raw(ws, {"type": "response.create", "model": "gpt-4o", "store": False,
                                         "previous_response_id": second[-1]["response"]["id"],
                                         "input": [{"type": "function_call_output", "call_id": "call_nope",
                                                    "output": "x"}]})
            assert refused["type"] == "error" and refused["status"] == 400
            assert "answers no function_call" in refused["error"]["message"]
            assert len(h.upstream.requests_to("/v1/responses")) == calls
