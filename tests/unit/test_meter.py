from __future__ import annotations

import itertools

import pytest

from shieldes.errors import BudgetExceeded, RateLimited, Unavailable
from shieldes.events.catalog import UsageRecorded
from shieldes.projections.state import Budget, ConfigState, Team, VirtualKey
from shieldes.projections.usage import UsageState, apply_usage
from shieldes.usage.meter import Meter
from shieldes.usage.units import Units

T0 = 1_800_000_000.0  # a minute boundary is at T0 - T0 % 60


class Clock:
    def __init__(self) -> None:
        self.now = T0 - T0 % 60

    def __call__(self) -> float:
        return self.now


def key(**kw: object) -> VirtualKey:
    base: dict[str, object] = dict(
        id="k1", name="app", key_hash="h", prefix="p", models=None, team_id=None, expires_at=None
    )
    base.update(kw)
    return VirtualKey(**base)  # type: ignore[arg-type]


def meter(clock: Clock, buffer_max: int = 1000) -> Meter:
    return Meter("n1", 7, buffer_max=buffer_max, clock=clock)


def test_rpm_window_with_retry_after_and_headers() -> None:
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m, k = meter(clock), key(rpm=2)
    for _ in range(2):
        m.settle(m.admit(cfg, usage, k, 0), "d", "gpt-4o", 1, 1, 0)
    clock.now += 20
    with pytest.raises(RateLimited) as exc:
        m.admit(cfg, usage, k, 0)
    # a sliding minute: the two count fully until this window ends, then fade over the next one;
    # one of them is out of the last minute's weighted count after 40 + 30 s
    assert exc.value.retry_after == pytest.approx(70)
    assert exc.value.headers["x-ratelimit-limit-requests"] == "2"
    assert exc.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert exc.value.headers["x-ratelimit-reset-requests"] == "70.000s"
    clock.now += 40  # next window: no second full window right after the boundary
    with pytest.raises(RateLimited):
        m.admit(cfg, usage, k, 0)
    clock.now += 30
    m.admit(cfg, usage, k, 0)


def test_a_full_minute_at_a_boundary_is_not_followed_by_another() -> None:
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m, k = meter(clock), key(rpm=60)
    clock.now += 59  # 60 requests in the last second of a window
    assert sum(1 for _ in range(60) if m.admit(cfg, usage, k, 0)) == 60
    admitted_at: list[float] = []
    for _ in range(60 * 10):  # then one attempt every 0.1 s for a minute
        clock.now += 0.1
        try:
            m.admit(cfg, usage, k, 0)
        except RateLimited as exc:
            assert exc.retry_after <= 2.0
            continue
        admitted_at.append(clock.now)
    # fixed windows let 60 more through at once; the sliding minute frees one a second
    assert 58 <= len(admitted_at) <= 60
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(admitted_at))


def test_sliding_wait() -> None:
    from shieldes.usage.admission import sliding, sliding_wait

    assert sliding(10, 60, 30.0) == 40 and sliding(10, 60, 60.0) == 10
    assert sliding_wait(10, 0, 20, 1, 5.0) == 0.0
    assert sliding_wait(10, 60, 40, 1, 0.0) == pytest.approx(60 * (1 - 29 / 60))
    assert sliding_wait(20, 0, 20, 1, 15.0) == pytest.approx(45 + 60 * (1 - 19 / 20))


class Peers:
    """A cluster view stand-in: fixed peer counts, no peer spend."""

    def __init__(self, counts: dict[tuple[str, int], tuple[int, int]]) -> None:
        self.counts = counts

    def remote_counts(self, key_id: str, window: int) -> tuple[int, int]:
        return self.counts.get((key_id, window), (0, 0))

    def remote_spend(self, subject: str, days: range) -> int:
        return 0


def test_tpm_counts_settled_tokens_and_remote_components() -> None:
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m, k = meter(clock), key(tpm=100)
    m.settle(m.admit(cfg, usage, k, 0), "d", "gpt-4o", 40, 20, 0)
    snap = m.rate_snapshot()
    window = int(clock.now // 60)
    assert snap[("k1", window)] == (1, 60, 0)
    m.remote = Peers({("k1", window): (5, 40)})  # a peer's component brings it to the limit
    with pytest.raises(RateLimited):
        m.admit(cfg, usage, k, 0)
    m.remote = Peers({})
    m.admit(cfg, usage, k, 0)


def test_tpm_reserves_the_estimate_at_admission_and_hands_back_the_rest() -> None:
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m, k = meter(clock), key(tpm=100)
    window = int(clock.now // 60)
    first = m.admit(cfg, usage, k, 0, estimate_tokens=60)
    with pytest.raises(RateLimited) as err:  # 60 held + 60 more would pass 100, before any settlement
        m.admit(cfg, usage, k, 0, estimate_tokens=60)
    assert "may use up to 60" in err.value.message
    m.settle(first, "d", "gpt-4o", 10, 5, 0)  # used 15: the other 45 are handed back
    assert m.rate_snapshot()[("k1", window)] == (1, 60, 45)
    second = m.admit(cfg, usage, k, 0, estimate_tokens=60)
    m.settle(second, "d", "gpt-4o", 50, 30, 0)  # used 80: 20 beyond the estimate count too
    assert m.rate_snapshot()[("k1", window)] == (2, 140, 45)  # 95 net
    m.release(m.admit(cfg, usage, k, 0, estimate_tokens=5))  # failed upstream: all handed back
    assert m.rate_snapshot()[("k1", window)] == (3, 145, 50)


def test_budget_reserve_settle_pending_and_durable_handoff() -> None:
    clock, usage = Clock(), UsageState()
    team = Team("t1", "eng", Budget(10.0, "30d"))
    cfg = ConfigState(teams={"t1": team})
    m = meter(clock)
    k = key(budget=Budget(1e-6, "1d"), team_id="t1")  # 1000 nUSD
    res = m.admit(cfg, usage, k, 600)
    assert m.reserved()["k:k1"] == 600 and m.reserved()["t:t1"] == 600
    m.settle(res, "dep", "gpt-4o", 1, 1, 1200)  # real cost is above the estimate
    assert m.reserved()["k:k1"] == 0
    with pytest.raises(BudgetExceeded) as exc:
        m.admit(cfg, usage, k, 0)
    assert "shieldes budget set" in exc.value.message
    # The flush goes out; until the projection holds it, pending spend still counts.
    batch = m.cut_batch()
    assert batch is not None and batch.seq == 1 and batch.deltas[0].cost_nusd == 1200
    m.batch_appended(batch)
    m.drop_durable(usage)
    assert m.pending_snapshot()
    apply_usage(usage, UsageRecorded("n1", 7, 1, batch.deltas))
    m.drop_durable(usage)
    assert m.pending_snapshot() == {}
    with pytest.raises(BudgetExceeded):  # now from the durable totals
        m.admit(cfg, usage, k, 0)


def test_release_returns_the_reservation() -> None:
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m = meter(clock)
    k = key(budget=Budget(1e-5, "1d"))  # 10000 nUSD
    res = m.admit(cfg, usage, k, 10000)
    with pytest.raises(BudgetExceeded):  # the in-flight reservation holds the whole budget
        m.admit(cfg, usage, k, 0)
    m.release(res)
    m.release(res)  # idempotent
    m.admit(cfg, usage, k, 0)


def test_unsent_batch_is_retried_unchanged_and_buffer_bound_refuses() -> None:
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m = meter(clock, buffer_max=2)
    k = key()
    m.settle(m.admit(cfg, usage, k, 0), "d1", "gpt-4o", 3, 4, 10)
    first = m.cut_batch()
    m.settle(m.admit(cfg, usage, k, 0), "d2", "gpt-4o", 1, 1, 1)
    again = m.cut_batch()  # the append failed: same batch, same seq
    assert again is first and first is not None and first.seq == 1
    with pytest.raises(Unavailable):
        m.admit(cfg, usage, k, 0)
    m.batch_appended(first)
    second = m.cut_batch()
    assert second is not None and second.seq == 2 and second.deltas[0].provider == "d2"
    m.batch_appended(second)
    assert m.idle()


def test_deltas_aggregate_per_key_deployment_model_hour() -> None:
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m, k = meter(clock), key()
    for _ in range(3):
        m.settle(m.admit(cfg, usage, k, 0), "d", "gpt-4o", 10, 5, 7)
    batch = m.cut_batch()
    assert batch is not None and len(batch.deltas) == 1
    d = batch.deltas[0]
    assert (d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nusd) == (3, 30, 15, 21)
    assert d.hour == int(clock.now // 3600)


def test_the_completion_cap_is_what_the_budget_and_tpm_leave_after_the_prompt() -> None:
    from shieldes.usage.pricing import Rate, completion_cap

    rate = Rate(10_000, 40_000, 10_000, 10_000)  # 10 and 40 nUSD per input / output token
    assert completion_cap(4096, 100, rate, None, None) == 4096
    assert completion_cap(4096, 100, rate, 100 * 10 + 40 * 50, None) == 50  # the budget's room after the prompt
    assert completion_cap(4096, 100, rate, None, 130) == 30  # the tpm limit's
    assert completion_cap(4096, 100, rate, 10**12, 130) == 30  # the tighter one
    free = Rate(10_000, 0, 10_000, 10_000)
    assert completion_cap(4096, 100, free, 5, None) == 4096  # free output: money does not bound it
    assert completion_cap(4096, 100, rate, 0, None) == 1  # nothing left: admission refuses it with the reason
    # a prompt above a long-context tier's threshold: the budget's room at the tier's rates
    long = rate._replace(long_above=50, long=Rate(20_000, 80_000, 20_000, 20_000))
    assert completion_cap(4096, 100, long, 100 * 20 + 40 * 80, None) == 40


def test_admission_decides_on_what_it_read_once() -> None:
    clock, usage = Clock(), UsageState()
    team = Team("t1", "eng", Budget(1.0, "1d"))
    cfg = ConfigState(teams={"t1": team})
    m, k = meter(clock), key(rpm=5, tpm=1000, team_id="t1", budget=Budget(2.0, "1d"))
    seen = m.look(cfg, usage, k)
    assert (seen.used, seen.key_spent, seen.team_spent, seen.team) == ((0, 0), 0, 0, team)
    assert seen.budget_left(k) == 1_000_000_000  # the team's dollar is the tighter budget
    assert seen.tokens_left(k) == 1000
    m.admit(cfg, usage, k, 300_000_000, estimate_tokens=400, seen=seen)
    again = m.look(cfg, usage, k)
    assert (again.used, again.key_spent, again.team_spent) == ((1, 400), 300_000_000, 300_000_000)
    # the checks run on the values handed in, not on a second read
    from dataclasses import replace

    full = replace(again, team_spent=1_000_000_000)
    with pytest.raises(BudgetExceeded, match="team 'eng'"):
        m.admit(cfg, usage, k, 1, seen=full)
    with pytest.raises(RateLimited):
        m.admit(cfg, usage, k, 1, seen=replace(again, used=(5, 400)))


def test_media_units_are_recorded_in_their_own_unit_and_count_against_tpm() -> None:
    """A media call's images, seconds and characters go into the flushed delta in their own fields
    (tokens stay tokens); seconds and characters count against the key's tpm as tokens would."""
    clock, cfg, usage = Clock(), ConfigState(), UsageState()
    m = meter(clock)
    k = key(tpm=100)
    window = int(clock() // 60)
    m.settle(m.admit(cfg, usage, k, 0, estimate_tokens=30), "d", "tts-1", 0, 0, 420, Units(characters=28))
    m.settle(m.admit(cfg, usage, k, 0, estimate_tokens=6), "d", "tts-1", 0, 0, 30, Units(characters=2))
    m.settle(m.admit(cfg, usage, k, 0, estimate_tokens=3), "d", "dall-e-2", 3, 0, 9, Units(images=2))
    m.settle(m.admit(cfg, usage, k, 0, estimate_tokens=8), "d", "whisper-1", 0, 0, 6, Units(audio_seconds=6))
    assert m.rate_snapshot()[("k1", window)] == (4, 47, 8)  # 28 + 2 + 3 + 6 used of the 47 held
    batch = m.cut_batch()
    assert batch is not None
    got = {d.model: (d.requests, d.prompt_tokens, d.images, d.audio_seconds, d.characters, d.cost_nusd)
           for d in batch.deltas}
    assert got == {"tts-1": (2, 0, 0, 0, 30, 450), "dall-e-2": (1, 3, 2, 0, 0, 9), "whisper-1": (1, 0, 0, 6, 0, 6)}
