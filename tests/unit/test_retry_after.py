"""Retry-After and the refusal message that repeats it are the same whole number of seconds."""

from __future__ import annotations

import pytest

from shieldes.errors import RateLimited, retry_after_seconds
from shieldes.gateway.middleware import render_error


@pytest.mark.parametrize(("seconds", "whole"), [(0.0, 1), (0.2, 1), (1.0, 1), (46.0, 46), (46.0004, 47), (59.9, 60),
                                               (60.2, 60), (98.0, 60)])
def test_waits_round_up_to_whole_seconds_never_sooner(seconds: float, whole: int) -> None:
    assert retry_after_seconds(seconds) == whole


def test_the_header_says_what_the_message_says_just_past_a_whole_second() -> None:
    retry = 46.0004  # a sliding-window wait just past a whole second: 46 would be too soon
    exc = RateLimited(f"retry after {retry_after_seconds(retry)}s", retry_after=retry)
    resp = render_error(exc, "rid")
    assert resp.headers["Retry-After"] == "47" and "retry after 47s" in exc.message


def test_a_wait_past_a_minute_asks_for_a_minute() -> None:
    """Clients give up on a longer Retry-After (Claude Code past 60 s) instead of waiting."""
    exc = RateLimited(f"retry after {retry_after_seconds(98.5)}s", retry_after=98.5)
    assert render_error(exc, "rid").headers["Retry-After"] == "60" and "retry after 60s" in exc.message
