"""How a relayed stream counts for its deployment (relay.attempt_failed), whatever ended it: the
upstream, the client, the request, or the route raising before the first frame (relay.note_raised)."""

from __future__ import annotations

from shieldes.errors import InvalidRequest
from shieldes.gateway import relay
from shieldes.providers.base import UpstreamFailure
from shieldes.settings import Settings

STALL = Settings.model_fields["stream_stall_seconds"].default  # (30 s)


def _tally(outcome: str = "open", sent_bytes: int = 0) -> relay.Tally:
    tally = relay.Tally()
    tally.outcome = outcome
    tally.sent_bytes = sent_bytes
    return tally


def test_each_end_counts_as_what_it_is() -> None:
    assert relay.attempt_failed(_tally("done", 120), STALL) is False
    assert relay.attempt_failed(_tally("disconnected", 120), STALL) is False  # the upstream was answering
    assert relay.attempt_failed(_tally("disconnected"), STALL) is None  # gone before any frame went out
    assert relay.attempt_failed(_tally("open"), STALL) is None  # stopped by the route or the node
    broken = _tally(sent_bytes=40)
    relay.note_failure(broken, UpstreamFailure("connection reset", status=None, retryable=True), str)
    assert relay.attempt_failed(broken, STALL) is True
    refused = _tally(sent_bytes=40)
    relay.note_failure(refused, UpstreamFailure("prompt is too long", status=400, retryable=False,
                                                code="context_length_exceeded"), str)
    assert relay.attempt_failed(refused, STALL) is None


def test_what_the_route_raised_before_the_first_frame_counts_as_whose_fault_it_is() -> None:
    upstream = _tally()
    relay.note_raised(upstream, UpstreamFailure("the upstream's first event was garbage", status=None,
                                                retryable=False), str)
    assert upstream.outcome == "upstream_error" and relay.attempt_failed(upstream, STALL) is True
    for raised in (ConnectionResetError("gone"), InvalidRequest("bad field"), RuntimeError("a gateway bug")):
        tally = _tally()
        relay.note_raised(tally, raised, str)
        assert tally.outcome == "open" and relay.attempt_failed(tally, STALL) is None, raised
    # a stream whose end was already noted keeps it
    ended = _tally("done", 10)
    relay.note_raised(ended, UpstreamFailure("late", status=None, retryable=False), str)
    assert ended.outcome == "done"


def test_a_client_leaving_a_stalled_stream_is_the_upstreams_failure() -> None:
    """Frames sent, then the upstream silent for the stall setting (SHIELDES_STREAM_STALL_SECONDS)
    or more when the client left: it stalled (the client merely gave up first); silent for less,
    it was answering. The threshold is the one given: a setting raised for a model that thinks
    silently for minutes keeps such a pause a success."""
    answering = _tally("disconnected", 120)
    answering.silent_for = STALL - 1
    assert relay.attempt_failed(answering, STALL) is False
    stalled = _tally("disconnected", 120)
    stalled.silent_for = STALL
    assert relay.attempt_failed(stalled, STALL) is True
    assert relay.attempt_failed(stalled, STALL + 1) is False  # a longer threshold: still answering
    silent_from_the_start = _tally("disconnected")  # no frame went out: nothing, as before
    silent_from_the_start.silent_for = STALL * 2
    assert relay.attempt_failed(silent_from_the_start, STALL) is None
