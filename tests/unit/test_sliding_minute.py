"""The sliding minute's bound, on the code admission runs (Meter with its clock, `sliding`,
`sliding_wait`): the previous window's weighted part counts exactly (rounded up), so what a key is
admitted over any d seconds is at most L·(1 + d/60) (docs/gateway.md "Limits and budgets"), and a
refusal's wait is the first instant the request fits."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.errors import RateLimited
from shieldes.projections.state import ConfigState, VirtualKey
from shieldes.projections.usage import UsageState
from shieldes.usage.admission import WINDOW, sliding, sliding_wait
from shieldes.usage.meter import Meter

BOUNDARY = 1_800_000_000.0  # a minute boundary (a real clock's size: its floats step by 2**-22 s)
TICK = 2.0**-20  # times the pure functions get: as coarse as a clock's, finer than any wait shown


class Clock:
    def __init__(self) -> None:
        self.now = BOUNDARY

    def __call__(self) -> float:
        return self.now


def key(rpm: int) -> VirtualKey:
    return VirtualKey(id="k1", name="app", key_hash="h", prefix="p", models=None, team_id=None,
                      expires_at=None, rpm=rpm)


def fits(cur: int, prev: int, limit: int, need: int, at: float) -> bool:
    """Whether `need` more fit `at` seconds into the window of `cur` (after one of `prev`), nothing
    more admitted meanwhile: past the window's end its count becomes the previous one."""
    if at >= WINDOW:
        return sliding(0, cur, at - WINDOW) + need <= limit
    return sliding(cur, prev, at) + need <= limit


def test_the_previous_window_counts_until_all_of_it_has_slid_out() -> None:
    # a floor counted 1 x 0.9998 as 0: a 1-rpm key's request at 11:59:59 was followed by one at 12:00:00.01
    assert sliding(0, 1, 0.01) == 1 and sliding(0, 1, 59.99) == 1 and sliding(0, 1, 60.0) == 0
    assert sliding(0, 30, 30.0) == 15 and sliding(0, 30, 30.5) == 15 and sliding(0, 30, 29.5) == 16
    assert sliding(0, 9, 40.0) == 3 and sliding(0, 12, 55.0) == 1  # 9 x 1/3 is 3, not 3.0000000000000004 -> 4
    assert sliding_wait(0, 1, 1, 1, 0.01) == pytest.approx(59.99)


def exact_part(prev: int, at: float) -> Fraction:
    return max(Fraction(0), Fraction(prev) * (WINDOW - Fraction(at)) / WINDOW)


@given(prev=st.integers(0, 10**7), ticks=st.integers(0, int(WINDOW / TICK)))
def test_sliding_rounds_the_exact_part_up(prev: int, ticks: int) -> None:
    """At a clock's resolution the count is the exact weighted part rounded up, never one more
    (floating-point error, e.g. a product an ulp above a whole number) nor one less."""
    at = ticks * TICK
    part = exact_part(prev, at)
    assert sliding(7, prev, at) == 7 + -(-part.numerator // part.denominator)


class Peers:
    """Peers' counts of the key (the cluster view's interface): how the test sets a window's counts."""

    def __init__(self, counts: dict[int, tuple[int, int]]) -> None:
        self.counts = counts

    def remote_counts(self, key_id: str, window: int) -> tuple[int, int]:
        return self.counts.get(window, (0, 0))

    def remote_spend(self, subject: str, days: range) -> int:
        return 0


@given(counts=st.tuples(*[st.integers(0, 10**7)] * 4), ticks=st.integers(0, int(WINDOW / TICK) - 1))
def test_the_meter_counts_what_sliding_counts(counts: tuple[int, int, int, int], ticks: int) -> None:
    """Meter._used computes `sliding` inline (for speed): the same numbers, requests and tokens."""
    cur_req, cur_tok, prev_req, prev_tok = counts
    clock = Clock()
    clock.now = BOUNDARY + ticks * TICK
    m = Meter("n1", 1, buffer_max=10, clock=clock)
    w = int(clock.now // WINDOW)
    m.remote = Peers({w: (cur_req, cur_tok), w - 1: (prev_req, prev_tok)})
    k = VirtualKey(id="k1", name="app", key_hash="h", prefix="p", models=None, team_id=None, expires_at=None,
                   rpm=1, tpm=1)
    elapsed = clock.now - w * WINDOW
    assert m.look(ConfigState(), UsageState(), k).used == (sliding(cur_req, prev_req, elapsed),
                                                           sliding(cur_tok, prev_tok, elapsed))


@given(cur=st.integers(0, 200), prev=st.integers(0, 200), limit=st.integers(1, 200),
       need=st.integers(1, 200), ticks=st.integers(0, int(WINDOW / TICK) - 1))
def test_the_wait_is_the_first_instant_the_request_fits(cur: int, prev: int, limit: int, need: int,
                                                        ticks: int) -> None:
    """`cur` may be past the limit (peers' counts in a cluster): the wait runs into the next window."""
    elapsed = ticks * TICK
    if need > limit:  # never fits (admission refuses such a request before asking how long)
        return
    wait = sliding_wait(cur, prev, limit, need, elapsed)
    assert wait >= 0.0
    # to the nanosecond (headers show milliseconds): a wait into the next window is a sum that rounds
    assert fits(cur, prev, limit, need, elapsed + wait + 1e-9)
    if wait > 1e-9:
        assert not fits(cur, prev, limit, need, elapsed + wait - 1e-9)
        assert not fits(cur, prev, limit, need, elapsed)


attempts = st.lists(st.tuples(st.integers(0, 70_000), st.booleans()), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(1, 12), start=st.integers(0, 59_999), steps=attempts)
def test_what_one_node_admits_in_any_d_seconds_is_at_most_l_times_1_plus_d_over_60(
        limit: int, start: int, steps: list[tuple[int, bool]]) -> None:
    """Attempts at arbitrary times (gaps in ms), some waiting exactly the refusal's wait: in every
    fixed window at most L; between any two admissions d seconds apart (both counted) at most
    L·(1 + d/60), so a 1-rpm key is never admitted twice within 60 s; and right after the wait a
    refusal gave, the request is admitted (just before it, not)."""
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m, k = Meter("n1", 1, buffer_max=10**6, clock=clock), key(limit)
    clock.now = BOUNDARY + start / 1000
    admitted: list[float] = []
    for gap_ms, wait_as_told in steps:
        clock.now += gap_ms / 1000
        try:
            m.admit(cfg, usage, k, 0)
        except RateLimited as exc:
            if not wait_as_told:
                continue
            refused_at = clock.now
            if exc.retry_after > 1e-3:
                clock.now = refused_at + exc.retry_after - 1e-3
                with pytest.raises(RateLimited):
                    m.admit(cfg, usage, k, 0)
            clock.now = refused_at + exc.retry_after + 1e-6  # the clock's resolution is 2**-22 s
            m.admit(cfg, usage, k, 0)
        admitted.append(clock.now)
    per_window: dict[int, int] = {}
    for t in admitted:
        per_window[int(t // WINDOW)] = per_window.get(int(t // WINDOW), 0) + 1
    assert max(per_window.values(), default=0) <= limit
    for i, first in enumerate(admitted):
        for j in range(i + 1, len(admitted)):
            d = admitted[j] - first
            assert j - i + 1 <= limit * (1 + d / WINDOW) + 1e-9, (j - i + 1, d, admitted)
