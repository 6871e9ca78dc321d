"""The pure parts of the Responses WebSocket's lanes: an event marked with its lane, and what a
connection remembers of each lane."""

from __future__ import annotations

import orjson
import pytest

from shieldes.gateway.responses_socket import with_lane
from shieldes.responses.history import NONE, History
from shieldes.responses.socket_memory import SocketMemory


@pytest.mark.parametrize("data", [b'{"type":"response.output_text.delta","delta":"hi"}', b"{}",
                                  b'{ "type" : "x" }\n', b'{"type":"x","stream_id":"old"}'])
@pytest.mark.parametrize("lane", ["a", 'quote " and \\ backslash', "\u00e9t\u00e9"])
def test_an_event_names_its_lane_and_stays_the_same_object(data: bytes, lane: str) -> None:
    marked = orjson.loads(with_lane(data, lane))
    assert marked == {**orjson.loads(data), "stream_id": lane}


def test_an_event_of_the_unnamed_lane_goes_as_it_came() -> None:
    assert with_lane(b'{"type":"x"}', None) == '{"type":"x"}'


def _response(rid: str, text: str, status: str = "completed") -> dict[str, object]:
    return {"id": rid, "status": status, "output": [{"type": "message", "content": text}]}


def test_each_lane_keeps_its_latest_response_and_any_lane_reads_it() -> None:
    memory = SocketMemory()
    a, b = memory.lane("a"), memory.lane("b")
    a.remember(_response("r1", "one"), "key", History.of([{"role": "user", "content": "q1"}]))
    b.remember(_response("r2", "two"), "key", History.of([{"role": "user", "content": "q2"}]))
    remembered = a.history("r1", "key")
    assert remembered is not None
    assert remembered.items == [{"role": "user", "content": "q1"}, {"type": "message", "content": "one"}]
    assert a.history("r2", "key") is not None  # a fork of lane b's latest
    assert a.history("r1", "other key") is None  # only for the key that made it
    a.remember(_response("r3", "three"), "key", NONE)
    assert b.history("r1", "key") is None  # lane a's latest is r3 now
    a.remember(_response("r4", "four", status="failed"), "key", NONE)
    assert a.history("r3", "key") is not None and a.history("r4", "key") is None  # a failed turn is sent again


def test_a_connection_forgets_the_lane_used_longest_ago() -> None:
    memory = SocketMemory(kept=2)
    for lane, rid in (("a", "r1"), ("b", "r2"), ("a", "r3"), ("c", "r4")):
        memory.lane(lane).remember(_response(rid, rid), "key", NONE)
    assert memory.history("r2", "key") is None  # lane b: used before a's second turn
    assert memory.history("r3", "key") is not None and memory.history("r4", "key") is not None
