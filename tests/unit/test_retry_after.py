"""Retry-After and the refusal message that repeats it are the same whole number of seconds."""

from __future__ import annotations

import pytest

from shieldes.errors import RateLimited, retry_after_seconds
from shieldes.gateway.middleware import render_error


@pytest.mark.parametrize(("seconds", "whole"), [(0.0, 1), (0.2, 1), (1.0, 1), (66.0, 66), (66.0004, 67), (59.9, 60)])
def test_waits_round_up_to_whole_seconds_never_sooner(seconds: float, whole: int) -> None:
    assert retry_after_seconds(seconds) == whole


def test_the_header_says_what_the_message_says_just_past_a_whole_second() -> None:
    retry = 66.0004  # a sliding-window wait just past a whole second: 66 would be too soon
    exc = RateLimited(f"retry after {retry_after_seconds(retry)}s", retry_after=retry)
    resp = render_error(exc, "rid")
    assert resp.headers["Retry-After"] == "67" and "retry after 67s" in exc.message
