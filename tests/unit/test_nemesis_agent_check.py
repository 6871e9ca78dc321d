"""The nemesis's agent checks (tests/cluster/nemesis_agent_check.py) on hand-made turns: each
property is violated once on purpose and must be reported, and the same turns within the documented
windows must pass."""

from __future__ import annotations

from typing import Any

from tests.cluster.nemesis_agent_check import (
    Turn,
    check_failures,
    check_reported,
    check_shapes,
    check_sockets,
    check_stored,
)
from tests.cluster.nemesis_check import Fault

T = 1000.0
OPENAI_404 = {"error": {"message": "Response with id 'resp_1' not found", "type": "invalid_request_error",
                        "param": None, "code": "not_found"}}


def turn(tag: str, *, api: str = "responses", node: str = "a", at: float = T, took: float = 0.1,
         status: int = 200, error: Any = None, previous: Turn | None = None) -> Turn:
    t = Turn(api, tag, node, at, stream=True, previous=previous.response_id if previous else None,
             previous_tag=previous.tag if previous else None, number=previous.number + 1 if previous else 1)
    t.ended_at, t.status, t.error = at + took, status, error
    if status == 200:
        t.complete(f"resp_{tag}", 4, 5)
    return t


def test_a_stored_response_is_lost_only_to_a_kill_within_the_writers_window() -> None:
    first = turn("1")
    unread = {"resp_1": {"a": 404, "b": 404}}
    assert not check_stored([first], {"resp_1": {"a": 200, "b": 200}}, [])
    assert check_stored([first], unread, [])
    assert not check_stored([first], unread, [Fault("kill", ("a",), T + 0.3, T + 2)])
    assert check_stored([first], unread, [Fault("kill", ("a",), T + 3, T + 5)])
    # queued while Postgres was cut, then the kill: lost as documented
    assert not check_stored([first], unread, [Fault("pg_cut", (), T, T + 3), Fault("kill", ("a",), T + 2, T + 4)])
    # a graceful restart writes everything first
    assert check_stored([first], unread, [Fault("term", ("a",), T + 0.2, T + 2)])
    # sent to the boot the kill ended, so answered before it, though its client recorded the answer
    # after the harness recorded the exit (both late in a loaded harness loop)
    assert not check_stored([first], unread, [Fault("kill", ("a",), T + 0.05, T + 2)])
    # sent after that kill: answered by the next boot, which wrote it
    assert check_stored([first], unread, [Fault("kill", ("a",), T - 0.05, T + 2)])
    assert not check_stored([turn("m", api="messages")], {}, [])  # Messages stores nothing


def test_a_continuation_fails_only_within_the_documented_windows() -> None:
    first = turn("1", node="a")
    gone = {"error": {"message": "Previous response with id 'resp_1' not found", "type": "invalid_request_error",
                      "param": "previous_response_id", "code": "previous_response_not_found"}}
    lost = turn("2", node="b", at=T + 0.5, status=400, error=gone, previous=first)
    assert check_failures([first, lost], [])
    assert not check_failures([first, lost], [Fault("kill", ("a",), T + 0.2, T + 2)])
    assert not check_failures([first, lost], [Fault("kill", ("a",), T + 0.05, T + 2)])  # seed 32872158
    assert check_failures([first, lost], [Fault("kill", ("a",), T - 0.05, T + 2)])
    # its node slept before writing it and woke after the read's wait
    assert not check_failures([first, lost], [Fault("pause", ("a",), T + 0.2, T + 3)])
    assert check_failures([first, lost], [Fault("pause", ("a",), T + 2, T + 3)])
    cut = {"error": {"message": "stored responses cannot be read right now", "type": "server_error",
                     "code": "database_unavailable"}}
    during = turn("3", node="b", at=T + 1, status=503, error=cut, previous=first)
    assert not check_failures([first, during], [Fault("pg_cut", (), T + 0.5, T + 3)])
    assert check_failures([first, during], [Fault("pg_cut", (), T + 10, T + 13)])
    dropped = turn("4", node="b", at=T + 1, status=0, previous=first)
    assert check_failures([first, dropped], [Fault("kill", ("a",), T + 1, T + 2)])  # another node's kill
    assert not check_failures([first, dropped], [Fault("term", ("b",), T + 1, T + 2)])


def test_errors_are_in_their_apis_shape_and_never_a_500() -> None:
    assert not check_shapes([turn("1", status=404, error=OPENAI_404)])
    assert check_shapes([turn("1", status=500, error=OPENAI_404)])
    anthropic = {"type": "error", "error": {"type": "not_found_error", "message": "no"}}
    assert not check_shapes([turn("1", api="messages", status=404, error=anthropic)])
    assert check_shapes([turn("1", api="messages", status=404, error=OPENAI_404)])
    assert check_shapes([turn("1", status=404, error="<html>Not Found</html>")])
    event = {"type": "error", "status": 404, "error": OPENAI_404["error"]}
    assert not check_shapes([turn("1", api="socket", status=404, error=event)])
    assert check_shapes([turn("1", api="socket", status=404, error=OPENAI_404)])


def test_each_completed_turn_was_served_once_and_told_the_upstreams_usage() -> None:
    done = turn("1")
    assert not check_reported([done], {"1": [(4, 5)]})
    assert check_reported([done], {"1": [(4, 5), (4, 5)]})
    assert check_reported([done], {"1": [(6, 5)]})
    assert check_reported([done], {})


def test_a_socket_turn_ends_within_the_bound_plus_its_nodes_pause() -> None:
    slow = turn("1", api="socket", took=13.0)  # past the bound of 11 s
    assert check_sockets([slow], [])
    assert not check_sockets([slow], [Fault("pause", ("a",), T + 1, T + 8)])
    assert check_sockets([turn("2", api="socket", status=-2, took=30.0)], [Fault("pause", ("a",), T, T + 5)])
