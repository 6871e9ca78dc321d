"""The cluster-aware meter and breaker, with a stand-in cluster view (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shieldes.cluster.health import ClusterBreaker
from shieldes.cluster.meter import BUDGET_WINDOW, RATE_WINDOW, TOKEN_WINDOW, ClusterMeter
from shieldes.errors import BudgetExceeded, RateLimited
from shieldes.projections.state import Budget, ConfigState, VirtualKey
from shieldes.projections.usage import UsageState

NOW = 1_800_000_030.0  # 30 s into a minute


@dataclass
class View:
    alive: int = 3
    outstanding: dict[tuple[str, int, str], int] = field(default_factory=dict)

    def alive_and_rank(self) -> tuple[int, int]:
        return self.alive, 0

    def remote_outstanding(self, subject: str, window: int, name: str = RATE_WINDOW) -> int:
        return self.outstanding.get((subject, window, name), 0)


def key(**kw: object) -> VirtualKey:
    return VirtualKey("k1", "app", "h", "sk-shd", None, None, None, **kw)  # type: ignore[arg-type]


def meter(view: View | None) -> ClusterMeter:
    m = ClusterMeter("n1", 7, buffer_max=1000, clock=lambda: NOW)
    m.cluster = view
    return m


def admitted(m: ClusterMeter, k: VirtualKey, n: int, estimate: int = 0) -> int:
    ok = 0
    for _ in range(n):
        try:
            m.admit(ConfigState(), UsageState(), k, estimate)
        except (RateLimited, BudgetExceeded):
            continue
        ok += 1
    return ok


def test_cut_off_from_peers_a_node_admits_its_share_not_the_whole_limit() -> None:
    # no gossip arrives: the round never ends, so this node keeps to ceil(30 / 3) this minute
    assert admitted(meter(View(alive=3)), key(rpm=30), 100) == 10
    assert admitted(meter(View(alive=1)), key(rpm=30), 100) == 30  # alone: exact
    assert admitted(meter(None), key(rpm=30), 100) == 30  # no cluster runtime: the base meter


def test_peers_unused_claims_count_as_spent_headroom() -> None:
    window = int(NOW // 60)
    view = View(alive=3, outstanding={("k:k1", window, RATE_WINDOW): 24})
    assert admitted(meter(view), key(rpm=30), 100) == 2  # ceil((30 - 24) / 3)


def test_a_new_round_returns_unused_claims_and_grants_more() -> None:
    m = meter(View(alive=2))
    assert admitted(m, key(rpm=10), 3) == 3  # claims 5, uses 3
    assert m.gossip_allowances() == {("k:k1", RATE_WINDOW, int(NOW // 60)): 2}
    m.rounds.sent(1)
    m.rounds.peer_saw("n2", 0, 1)
    assert m.rounds.advance(["n2"], 0)
    assert m.gossip_allowances() == {}
    assert admitted(m, key(rpm=10), 100) == 4  # ceil((10 - 3) / 2)


def test_token_limits_are_reserved_and_split_in_estimated_tokens() -> None:
    m, k = meter(View(alive=2)), key(tpm=1000)
    ok = 0
    for _ in range(10):
        try:
            m.admit(ConfigState(), UsageState(), k, 0, estimate_tokens=200)
        except RateLimited:
            continue
        ok += 1
    # this node's share is 1000 / 2 = 500 tokens: two requests of 200 fit, a third does not until
    # the round ends (it used to admit all ten: tokens were counted only at settlement, unsplit)
    assert ok == 2
    assert m.gossip_allowances()[("k:k1", TOKEN_WINDOW, int(NOW // 60))] == 100


def test_budgets_are_split_in_estimated_cost() -> None:
    k = key(budget=Budget(1.0, "1d"))  # 1e9 nUSD
    m = meter(View(alive=4))
    # free while under 75% spent or held (8 x 1e8), then a share of the last quarter: 2e8 / 4 = 5e7 is
    # less than one request's 1e8 estimate, so the claim is one request's estimate (it fits the rest)
    assert admitted(m, k, 100, estimate=100_000_000) == 9
    day = int(NOW // 86400)
    assert m.gossip_reservations() == {"k:k1": (900_000_000, 0)}
    assert (("k:k1", BUDGET_WINDOW, day) in m.gossip_allowances()) is False  # share used up


def test_pending_usage_is_exported_by_flush_sequence() -> None:
    m = meter(View(alive=2))
    res = m.admit(ConfigState(), UsageState(), key(), 50)
    m.settle(res, "openai", "gpt-4o", 10, 5, 40)
    day = int(NOW // 86400)
    assert m.gossip_pending() == {(7, 1, "k:k1", day): (0, 0, 40)}
    batch = m.cut_batch()
    assert batch is not None and batch.seq == 1
    res = m.admit(ConfigState(), UsageState(), key(), 50)
    m.settle(res, "openai", "gpt-4o", 10, 5, 60)
    assert m.gossip_pending() == {(7, 1, "k:k1", day): (0, 0, 40), (7, 2, "k:k1", day): (0, 0, 60)}
    assert m.gossip_reservations() == {"k:k1": (100, 100)}


def test_breaker_rests_a_deployment_a_peer_found_failing() -> None:
    remote = {"bad": True}
    b = ClusterBreaker(failures=2, cooldown=10.0, clock=lambda: 0.0,
                       remote_open=lambda n: remote.get(n, False))
    assert b.is_open("bad") and not b.locally_open("bad")
    assert not b.is_open("good")
    b.failure("good")
    b.failure("good")
    assert b.is_open("good")
    health = b.health()
    assert health["good"].open and health["good"].error_rate > 0
    remote["bad"] = False
    assert not b.is_open("bad")


@pytest.mark.parametrize("alive", [2, 3, 5])
def test_one_node_alone_takes_only_its_share(alive: int) -> None:
    assert 7 // alive <= admitted(meter(View(alive=alive)), key(rpm=7), 50) <= -(-7 // alive)
