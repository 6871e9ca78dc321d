"""The meter, cluster-aware: requests-per-minute limits split by claimed shares, and this node's hot
state exported for gossip (counts, unused claims, pending usage by flush, reservations).

Peers' counts and pending spend reach the base Meter through its `remote` (the cluster view);
this class adds only what needs the cluster: the headroom split
(cluster/limits.py) in front of the base admission, and cumulative reservation counters so
reservations gossip as a PN-counter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from shieldes.cluster.limits import HeadroomSplitter, Rounds
from shieldes.cluster.view import PendingId, UnflushedId, Usage, WindowId
from shieldes.errors import BudgetExceeded, RateLimited, retry_after_seconds
from shieldes.projections.state import Budget, VirtualKey
from shieldes.usage.admission import WINDOW, Seen, budget_message, frees_at, usd
from shieldes.usage.meter import Meter, Remote, Reservation, sums_of

RATE_WINDOW = "min"  # window name in gossip: the meter's one-minute windows (admission slides over two)
TOKEN_WINDOW = "tpm"  # token shares, in the same one-minute windows
BUDGET_WINDOW = "budget"  # budget shares, scoped to the unix day they were claimed in
# Budgets are split only in their last quarter: far from the limit, peers' spend shows up through
# gossiped pending usage and reservations soon enough, and requests keep flowing at full speed.
BUDGET_SPLIT_FROM = 0.75
SHARE_RETRY = 1.0  # seconds: a used-up share is renewed within a few gossip intervals


def key_subject(key_id: str) -> str:
    return "k:" + key_id


class ClusterView(Remote, Protocol):
    def alive_and_rank(self) -> tuple[int, int]:
        """(nodes a limit is split between, this one included; this node's index among their ids,
        sorted: who gets a remainder unit first). One read of the membership per request."""
        ...

    def remote_outstanding(self, subject: str, window: int, name: str = RATE_WINDOW) -> int: ...


class ClusterMeter(Meter):
    def __init__(self, node_id: str, epoch: int, *, buffer_max: int,
                 clock: Callable[[], float] | None = None) -> None:
        if clock is None:
            super().__init__(node_id, epoch, buffer_max=buffer_max)
        else:
            super().__init__(node_id, epoch, buffer_max=buffer_max, clock=clock)
        self.rounds = Rounds()
        self.splitter = HeadroomSplitter(self.rounds)
        self.cluster: ClusterView | None = None  # set by the cluster runtime once it runs
        self._reserved_total: dict[str, int] = {}
        self._released_total: dict[str, int] = {}

    # --- admission -------------------------------------------------------------------------------

    def _split(self, key: VirtualKey, seen: Seen, estimate_nusd: int, estimate_tokens: int) -> None:
        cluster = self.cluster
        if cluster is None:
            return
        alive, rank = cluster.alive_and_rank()
        if alive <= 1:  # alone, the base meter's own checks are exact
            return
        if key.rpm is not None:
            self._split_rate(key, cluster, alive, rank, seen.w, seen.used[0])
        if key.tpm is not None:
            self._split_tokens(key, cluster, alive, rank, seen.w, seen.used[1], max(1, estimate_tokens))
        self._split_budgets(key, seen, max(1, estimate_nusd), cluster, alive, rank)

    def _split_tokens(self, key: VirtualKey, cluster: ClusterView, alive: int, rank: int, w: int, tokens: int,
                      cost: int) -> None:
        """Tokens per minute get the same split as requests, in estimated tokens (`tokens`: this
        node's and peers' in the sliding minute of window `w`)."""
        assert key.tpm is not None
        subject = key_subject(key.id)
        seen = tokens + cluster.remote_outstanding(subject, w, TOKEN_WINDOW)
        rank = (rank + w) % alive
        if not self.splitter.admit((subject, TOKEN_WINDOW, w), key.tpm, seen, alive, cost, rank):
            reset = self._wait(key.id, w, key.tpm, cost, tokens=True)
            retry = reset if seen + cost > key.tpm else min(reset, SHARE_RETRY)
            raise RateLimited(
                f"rate limit reached for key {key.name!r}: {key.tpm} tokens per minute across the "
                f"cluster ({min(seen, key.tpm)} used or held by nodes; this request may use up to {cost}); "
                f"retry after {retry_after_seconds(retry)}s, lower max_tokens, or raise it with "
                "`shieldes key update --tpm`",
                retry_after=retry,
                headers={
                    "x-ratelimit-limit-tokens": str(key.tpm),
                    "x-ratelimit-remaining-tokens": str(max(0, key.tpm - seen)),
                    "x-ratelimit-reset-tokens": f"{reset:.3f}s",
                },
            )

    def _split_rate(self, key: VirtualKey, cluster: ClusterView, alive: int, rank: int, w: int,
                    requests: int) -> None:
        assert key.rpm is not None
        subject = key_subject(key.id)
        seen = requests + cluster.remote_outstanding(subject, w)
        # the remainder rotates between nodes window by window, so no node is always last
        rank = (rank + w) % alive
        if not self.splitter.admit((subject, RATE_WINDOW, w), key.rpm, seen, alive, rank=rank):
            # `seen` also counts claims peers hold but have not used: those come back within a round,
            # so only what is really used makes the refusal last until the sliding minute frees one
            remaining = max(0, key.rpm - requests)
            reset = self._wait(key.id, w, key.rpm, 1) if remaining == 0 else SHARE_RETRY
            retry = reset if remaining == 0 else min(reset, SHARE_RETRY)
            after = retry_after_seconds(retry)  # what Retry-After says
            if remaining == 0:
                message = (f"rate limit reached for key {key.name!r}: all {key.rpm} requests per minute are used "
                           f"across the cluster; retry after {after}s or raise it with `shieldes key update --rpm`")
            else:  # the rest of the window is claimed by other nodes for now; it comes back within a round
                message = (f"rate limit for key {key.name!r} ({key.rpm} requests per minute across the cluster): "
                           f"{remaining} of {key.rpm} remain but other nodes hold them for now; "
                           f"retry after {after}s")
            raise RateLimited(message, retry_after=retry, headers={
                "x-ratelimit-limit-requests": str(key.rpm),
                "x-ratelimit-remaining-requests": str(remaining),
                "x-ratelimit-reset-requests": f"{reset:.3f}s",
            })

    def _split_budgets(self, key: VirtualKey, seen: Seen, cost: int, cluster: ClusterView, alive: int,
                       rank: int) -> None:
        """Budgets get the same headroom split as rate limits, in nano-USD of estimated cost."""
        if key.budget is not None and seen.key_spent is not None:
            self._split_budget("k:" + key.id, key.budget, seen.key_spent, seen.today, cost, cluster, alive, rank,
                               lambda: f"key {key.name!r}")
        team = seen.team
        if team is not None and team.budget is not None and seen.team_spent is not None:
            self._split_budget("t:" + team.id, team.budget, seen.team_spent, seen.today, cost, cluster, alive, rank,
                               lambda: f"team {team.name!r}")

    def _split_budget(self, subject: str, budget: Budget, spent: int, today: int, cost: int, cluster: ClusterView,
                      alive: int, rank: int, what: Callable[[], str]) -> None:
        limit = budget.limit_nusd
        seen_nusd = spent + cluster.remote_outstanding(subject, today, BUDGET_WINDOW)
        if seen_nusd < limit * BUDGET_SPLIT_FROM:
            return
        turn = (rank + today) % alive
        if not self.splitter.admit((subject, BUDGET_WINDOW, today), limit, seen_nusd, alive, cost, turn):
            if seen_nusd + cost > limit:
                raise BudgetExceeded(budget_message(what(), budget, seen_nusd, cost, today),
                                     frees_at=frees_at(budget, today))
            raise BudgetExceeded(
                f"budget nearly used up for {what()}: {usd(seen_nusd)} of {usd(limit)} spent "
                f"or held across the cluster in the {budget.period} period; this node's share of the "
                "rest is in use: retry in a second, or raise it with `shieldes budget set`"
            )

    def _hold(self, res: Reservation, nusd: int) -> None:
        # Meter._hold's change and the grow-only totals gossip reads, in one walk of the subjects
        reserved = self._reserved
        totals = self._reserved_total if nusd > 0 else self._released_total
        held = abs(nusd)
        for subject in self._subjects_of(res.key_id, res.team_id):
            reserved[subject] = reserved.get(subject, 0) + nusd
            totals[subject] = totals.get(subject, 0) + held

    # --- export for gossip -----------------------------------------------------------------------

    def gossip_windows(self) -> dict[WindowId, tuple[int, int, int]]:
        return {(key_subject(k), RATE_WINDOW, w): v for (k, w), v in self.rate_snapshot().items()}

    def gossip_allowances(self) -> dict[WindowId, int]:
        return self.splitter.outstanding_all()

    def gossip_pending(self) -> dict[PendingId, tuple[int, int, int]]:
        """Spend not yet in this node's projection, by the flush (epoch, seq) that carries it: the cut
        batches with their own seq, the accumulator with the seq its batch will get."""
        out: dict[PendingId, tuple[int, int, int]] = {}
        for batch in self._batches:
            for (subject, day), nusd in batch.spend.items():
                out[(self.boot_epoch, batch.seq, subject, day)] = (0, 0, nusd)
        next_seq = self._seq + 1
        for (subject, day), nusd in self._acc_spend.items():
            out[(self.boot_epoch, next_seq, subject, day)] = (0, 0, nusd)
        return out

    def gossip_unflushed(self) -> dict[UnflushedId, Usage]:
        """The deltas of every flush not appended yet (an unsent batch, the accumulator under the seq
        its batch will get): if this boot dies, the leader appends them on its behalf."""
        out: dict[UnflushedId, Usage] = {}
        epoch = self.boot_epoch
        for batch in self._batches:
            if not batch.appended:
                for d in batch.deltas:
                    out[(epoch, batch.seq, d.key_id, d.team_id, d.provider, d.model, d.hour)] = tuple(sums_of(d))
        next_seq = self._seq + 1
        for (key_id, team_id, provider, model, hour), v in self._acc.items():
            out[(epoch, next_seq, key_id, team_id, provider, model, hour)] = tuple(v)
        return out

    def gossip_reservations(self) -> dict[str, tuple[int, int]]:
        return {s: (r, self._released_total.get(s, 0)) for s, r in self._reserved_total.items()}

    def forget_old_windows(self) -> None:
        now = self.clock()
        self.splitter.forget_windows_before(RATE_WINDOW, int(now // WINDOW) - 1)
        self.splitter.forget_windows_before(TOKEN_WINDOW, int(now // WINDOW) - 1)
        self.splitter.forget_windows_before(BUDGET_WINDOW, int(now // 86400) - 1)
