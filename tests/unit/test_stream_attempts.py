"""How a relayed stream counts for its deployment (relay.attempt_failed), whatever ended it: the
upstream, the client, the request, or the route raising before the first frame (relay.note_raised)."""

from __future__ import annotations

from shieldes.errors import InvalidRequest
from shieldes.gateway import relay
from shieldes.providers.base import UpstreamFailure


def _tally(outcome: str = "open", sent_bytes: int = 0) -> relay.Tally:
    tally = relay.Tally()
    tally.outcome = outcome
    tally.sent_bytes = sent_bytes
    return tally


def test_each_end_counts_as_what_it_is() -> None:
    assert relay.attempt_failed(_tally("done", 120)) is False
    assert relay.attempt_failed(_tally("disconnected", 120)) is False  # the upstream was answering
    assert relay.attempt_failed(_tally("disconnected")) is None  # gone before any frame went out
    assert relay.attempt_failed(_tally("open")) is None  # stopped by the route or the node
    broken = _tally(sent_bytes=40)
    relay.note_failure(broken, UpstreamFailure("connection reset", status=None, retryable=True), str)
    assert relay.attempt_failed(broken) is True
    refused = _tally(sent_bytes=40)
    relay.note_failure(refused, UpstreamFailure("prompt is too long", status=400, retryable=False,
                                                code="context_length_exceeded"), str)
    assert relay.attempt_failed(refused) is None


def test_what_the_route_raised_before_the_first_frame_counts_as_whose_fault_it_is() -> None:
    upstream = _tally()
    relay.note_raised(upstream, UpstreamFailure("the upstream's first event was garbage", status=None,
                                                retryable=False), str)
    assert upstream.outcome == "upstream_error" and relay.attempt_failed(upstream) is True
    for raised in (ConnectionResetError("gone"), InvalidRequest("bad field"), RuntimeError("a gateway bug")):
        tally = _tally()
        relay.note_raised(tally, raised, str)
        assert tally.outcome == "open" and relay.attempt_failed(tally) is None, raised
    # a stream whose end was already noted keeps it
    ended = _tally("done", 10)
    relay.note_raised(ended, UpstreamFailure("late", status=None, retryable=False), str)
    assert ended.outcome == "done"


def test_a_client_leaving_a_stalled_stream_is_the_upstreams_failure() -> None:
    """Frames sent, then the upstream silent for relay.STALLED_AFTER or more when the client left:
    it stalled (the client merely gave up first); silent for less, it was answering."""
    answering = _tally("disconnected", 120)
    answering.silent_for = relay.STALLED_AFTER - 1
    assert relay.attempt_failed(answering) is False
    stalled = _tally("disconnected", 120)
    stalled.silent_for = relay.STALLED_AFTER
    assert relay.attempt_failed(stalled) is True
    silent_from_the_start = _tally("disconnected")  # no frame went out: nothing, as before
    silent_from_the_start.silent_for = relay.STALLED_AFTER * 2
    assert relay.attempt_failed(silent_from_the_start) is None
