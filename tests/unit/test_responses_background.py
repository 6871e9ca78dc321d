"""The pure decisions about background responses (the ones the nodes run): when a run's node is
gone and what readers see then, what a cancel answers, how a run numbers and frames its events,
and a Run followed from any point while it runs."""

from __future__ import annotations

import asyncio

import pytest

from shieldes.errors import InvalidRequest
from shieldes.responses.background import (
    Run,
    RunInfo,
    check_cancellable,
    ended,
    numbered,
    owner_gone,
    pending,
    seen,
    sse_events,
    sse_frame,
    stopped,
)
from shieldes.responses.store import RunState

RUNNING = {"id": "resp_1", "object": "response", "status": "in_progress", "background": True, "usage": None}


def test_a_run_s_node_is_gone_when_it_left_restarted_or_went_silent() -> None:
    assert not owner_gone(7, 7, True)
    assert owner_gone(7, None, False)  # its row is gone: it left
    assert owner_gone(7, 8, True)  # a newer boot of the same node id: it restarted
    assert owner_gone(7, 7, False)  # heartbeat older than node_timeout: it died
    assert owner_gone(None, 7, True)  # a row that names no owner is no run anyone holds


def test_readers_see_a_pending_run_of_a_gone_node_as_failed_saying_to_create_it_again() -> None:
    gone = seen(RunState("k", RUNNING, [], "a", 7, 8, True))
    assert gone["status"] == "failed" and "(a)" in gone["error"]["message"]
    assert "create it again" in gone["error"]["message"] and gone["error"]["code"] == "server_error"
    alive = RunState("k", RUNNING, [], "a", 7, 7, True)
    assert seen(alive) is RUNNING
    done = dict(RUNNING, status="completed")
    assert seen(RunState("k", done, [], "a", 7, None, False)) is done  # finished: whatever its node did since
    assert not pending(done) and pending(RUNNING) and not pending(dict(RUNNING, background=False))
    assert stopped(RUNNING, None, "why")["error"]["message"].startswith("the node running this background response (?)")


@pytest.mark.parametrize("status, message", [
    ("completed", "Cannot cancel a completed response."),
    ("failed", "Cannot cancel a failed response."),
    ("incomplete", "Cannot cancel a response in terminal state."),
])
def test_a_finished_response_cannot_be_cancelled(status: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_cancellable(dict(RUNNING, status=status))
    assert refused.value.message == message and refused.value.param == "response_id"


def test_a_pending_or_cancelled_response_can_be_cancelled_again() -> None:
    for status in ("queued", "in_progress", "cancelled"):
        check_cancellable(dict(RUNNING, status=status))


def test_a_stream_that_broke_ends_the_run_failed_with_its_error() -> None:
    error = {"type": "error", "error": {"type": "api_error", "message": "upstream stream failed: boom"}}
    broke = ended(RUNNING, [{"type": "response.created"}, error])
    assert broke["status"] == "failed" and broke["error"]["message"] == "upstream stream failed: boom"
    assert ended(RUNNING, [])["error"]["message"].startswith("the upstream stream ended early")
    done = dict(RUNNING, status="incomplete")
    assert ended(done, [error]) is done


def test_events_are_numbered_by_their_place_and_name_the_run() -> None:
    event = {"type": "response.created", "sequence_number": 9, "response": {"id": "resp_upstream", "background": False}}
    out = numbered(event, 0, "resp_1")
    assert out["sequence_number"] == 0 and out["response"] == {"id": "resp_1", "background": True}
    assert event["sequence_number"] == 9  # the upstream's event is not changed
    assert numbered({"type": "x.delta", "delta": "a"}, 3, "resp_1") == {"type": "x.delta", "delta": "a",
                                                                       "sequence_number": 3}


def test_sse_bytes_split_anywhere_give_the_same_events() -> None:
    data = (sse_frame({"type": "a", "n": 1}) + b"event: b\r\ndata: {\"type\": \"b\"}\r\n\r\n: comment\n\n"
            + b"data: [DONE]\n\n")
    for cut in range(len(data)):
        first, rest = sse_events(data[:cut])
        second, left = sse_events(rest + data[cut:])
        assert first + second == [{"type": "a", "n": 1}, {"type": "b"}] and left == b""


async def test_a_run_is_followed_from_any_point_until_it_ends() -> None:
    run = Run(dict(RUNNING, status="queued"), RunInfo("k", 1.0, None, "m", []))
    run.feed(sse_frame({"type": "response.created", "response": RUNNING}) + b"event: response.output_text.delta\n")
    assert run.response is not None and run.response["status"] == "in_progress" and len(run.events) == 1
    got: list[bytes] = []

    async def read() -> None:
        async for frame in run.follow(-1):
            got.append(frame)

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0)
    run.feed(b'data: {"type": "response.output_text.delta", "delta": "hi"}\n\n')
    done = dict(RUNNING, status="completed")
    run.end(done, "response.completed")
    await asyncio.wait_for(reader, 1)
    assert [sse_events(f)[0][0]["sequence_number"] for f in got] == [0, 1, 2]
    assert run.response["status"] == "completed" and run.ended and run.deltas() == 1
    assert [f async for f in run.follow(1)] == got[2:]  # replay after event 1
    run.end(dict(RUNNING, status="failed"))  # a run ends once
    assert run.response["status"] == "completed"
