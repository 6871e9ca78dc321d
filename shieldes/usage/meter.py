"""The meter: rate limits, budgets and unflushed usage of one node, all in memory (no I/O).

Hot path: `admit()` before the upstream call (rpm/tpm windows, key and team budgets, buffer room),
`settle()` after it with the upstream's real token counts (or `release()` when nothing was used).
Settled usage counts for budgets at once and waits in an accumulator for the flusher.

Interface for a cluster layer (gossip): peers' state is read, never copied, through `remote`
(a `Remote`, the cluster view): their counts in a rate window, and their spend of a budget subject
not yet in this node's log (pending usage and reservations in flight). This node's own state is
exported as plain cumulative data: `rate_snapshot()`, `pending_snapshot()`, `reserved()`.

* Rate limits count in one-minute windows (`window = floor(unix_seconds / 60)`) and admit by a
  sliding minute: this window's count plus the previous window's, weighted by the share of it the
  last 60 s still cover (`sliding`), so a full window at the end of one minute is not followed by
  another full one at the start of the next.
* Budgets: spend in a period = durable log totals (UsageState) + pending local usage not yet
  projected from the log + in-flight reservations + peers' (from `remote`).
* Flusher side: `cut_batch()` / `batch_appended()` / `drop_durable(usage)`; see Batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from math import ceil
from typing import Protocol

from shieldes.errors import LimitTooSmall, RateLimited, Unavailable, retry_after_seconds
from shieldes.events.catalog import UsageDelta
from shieldes.projections.periods import period_days
from shieldes.projections.state import Budget, ConfigState, VirtualKey
from shieldes.projections.usage import Totals, UsageState
from shieldes.usage.admission import WINDOW, Seen, check_budget, sliding_wait
from shieldes.usage.units import NO_UNITS, Units

RateCounts = dict[tuple[str, int], tuple[int, int, int]]  # (key, window) -> (requests, tokens, released)
DELTA_SUMS = 11  # the summed fields of a UsageDelta, in its order (requests ... tools_nusd)


def sums_of(d: UsageDelta) -> list[int]:
    """A delta's summed fields, in its order."""
    return [d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nusd, d.images, d.audio_seconds, d.characters,
            d.web_searches, d.file_searches, d.containers, d.tools_nusd]


class Remote(Protocol):
    """What peers used, as this node's cluster view holds it (cluster/runtime.py)."""

    def remote_counts(self, key_id: str, window: int) -> tuple[int, int]:
        """Peers' (requests, tokens) of one key in one rate window."""
        ...

    def remote_spend(self, subject: str, days: range) -> int:
        """Peers' nUSD of a budget subject in `days` not yet in this node's log, reservations included."""
        ...

Pending = dict[tuple[str, int], int]
DeltaKey = tuple[str, str | None, str, str, int]  # key_id, team_id, provider, model, hour


@dataclass(slots=True)
class Reservation:
    """What admission held for one request; hand it back to settle() or release() exactly once."""

    key_id: str
    team_id: str | None
    nusd: int
    headers: dict[str, str]
    tokens: int = 0  # estimated tokens counted in the key's rate window `window` at admission
    window: int = -1
    done: bool = False


@dataclass(slots=True)
class Batch:
    """One flush: `deltas` go out as one usage.recorded event with `seq`; `spend` is its share of
    pending spend, dropped when the log (as projected) holds this node's usage up to `seq`."""

    seq: int
    deltas: tuple[UsageDelta, ...]
    spend: Pending
    appended: bool = False


@dataclass(slots=True)
class _Window:
    window: int = -1
    # key_id -> [requests, tokens, tokens released]: tokens count the estimate at admission; the part
    # of it a request did not use is released at settlement (grow-only halves, so gossip can max-merge)
    counts: dict[str, list[int]] = field(default_factory=dict)


class Meter:
    def __init__(self, node_id: str, boot_epoch: int, *, buffer_max: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.boot_epoch = boot_epoch  # flushes are identified by (node, boot epoch, seq)
        self.buffer_max = buffer_max
        self.clock = clock
        self._cur = _Window()
        self._prev = _Window()
        self.remote: Remote | None = None  # peers' state (the cluster view), once a cluster runs
        self._reserved: dict[str, int] = {}  # subject -> nusd held by in-flight requests
        self._pending: dict[str, dict[int, int]] = {}  # subject -> day -> nusd not yet projected
        # Durable spend per (subject, period, today), valid for one projection position.
        self._durable: dict[tuple[str, str, int], int] = {}
        self._durable_position = -1
        # unflushed deltas: requests, prompt, completion, nusd, images, audio seconds, characters, web
        # searches, file searches, containers, tools nusd (UsageDelta's order)
        self._acc: dict[DeltaKey, list[int]] = {}
        self._acc_spend: Pending = {}
        self._days: dict[tuple[str, int], range] = {}  # (period, today) -> its days
        # (key, team) -> budget subjects it spends on (a tuple's hash is its parts' cached ones: no
        # string built per look)
        self._subjects: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._batches: list[Batch] = []  # cut, in seq order: maybe one unsent head, then appended ones
        self._seq = 0
        self.flushed_seq = 0  # highest seq appended to the log by this node in this epoch
        self.on_usage: Callable[[], None] | None = None  # the first usage after none was unflushed (the flusher)

    # --- rate limits --------------------------------------------------------------------------

    def _roll(self, now: float) -> int:
        w = int(now // WINDOW)
        if w != self._cur.window:
            self._prev = self._cur if self._cur.window == w - 1 else _Window(w - 1)
            self._cur = _Window(w)
        return w

    def _counts(self, key_id: str, w: int) -> tuple[int, int]:
        """(requests, tokens net of released estimates) in fixed window `w`, this node's and peers'."""
        win = self._cur if self._cur.window == w else self._prev if self._prev.window == w else None
        local = win.counts.get(key_id) if win is not None else None
        req, tok = (local[0], local[1] - local[2]) if local else (0, 0)
        if self.remote is not None:
            r, t = self.remote.remote_counts(key_id, w)
            req += r
            tok += t
        return req, tok

    def _used(self, key_id: str, w: int) -> tuple[int, int]:
        """(requests, tokens) in the sliding minute ending now (`w` is the current window)."""
        elapsed = self.clock() - w * WINDOW
        cur, prev = self._cur, self._prev
        if cur.window == w and prev.window == w - 1:  # (as _roll leaves them): _counts of both, inline
            local, before = cur.counts.get(key_id), prev.counts.get(key_id)
            req, tok = (local[0], local[1] - local[2]) if local else (0, 0)
            prev_req, prev_tok = (before[0], before[1] - before[2]) if before else (0, 0)
            remote = self.remote
            if remote is not None:
                r, t = remote.remote_counts(key_id, w)
                req, tok = req + r, tok + t
                r, t = remote.remote_counts(key_id, w - 1)
                prev_req, prev_tok = prev_req + r, prev_tok + t
        else:
            (req, tok), (prev_req, prev_tok) = self._counts(key_id, w), self._counts(key_id, w - 1)
        left = WINDOW - elapsed  # what sliding() computes, for both: the previous window's part, rounded up
        if left > 0.0:
            return req + ceil(prev_req * left / WINDOW), tok + ceil(prev_tok * left / WINDOW)
        return req, tok

    def _wait(self, key_id: str, w: int, limit: int, need: int, *, tokens: bool = False) -> float:
        """Seconds until `need` more requests (or tokens) fit in the key's sliding minute."""
        i = 1 if tokens else 0
        cur, prev = self._counts(key_id, w)[i], self._counts(key_id, w - 1)[i]
        return sliding_wait(cur, prev, limit, need, self.clock() - w * WINDOW)

    def rate_snapshot(self) -> RateCounts:
        out: RateCounts = {}
        for win in (self._prev, self._cur):
            for key_id, (req, tok, released) in win.counts.items():
                out[(key_id, win.window)] = (req, tok, released)
        return out

    # --- budgets ------------------------------------------------------------------------------

    def pending_snapshot(self) -> Pending:
        return {(subject, day): nusd for subject, days in self._pending.items() for day, nusd in days.items()}

    def spent_nusd(self, usage: UsageState, subject: str, budget: Budget, today: int,
                   position: int | None = None) -> int:
        """Spend of `subject` ("k:<id>"/"t:<id>") in its budget period, as this node knows it.
        `position` (the projection's log position) lets the durable part be cached until it moves."""
        dk = (budget.period, today)
        days = self._days.get(dk)
        if days is None:
            if len(self._days) > 64:  # a few periods per day: never grows past a handful
                self._days.clear()
            days = self._days[dk] = period_days(budget.period, today)
        ck = (subject, budget.period, today)
        cached = position is not None and position == self._durable_position
        durable = self._durable.get(ck) if cached else None
        if durable is None:
            kind, sid = subject[0], subject[2:]
            durable = usage.key_cost(sid, days) if kind == "k" else usage.team_cost(sid, days)
            if position is not None:
                if position != self._durable_position:
                    self._durable.clear()
                    self._durable_position = position
                self._durable[ck] = durable
        total = durable
        mine = self._pending.get(subject)
        if mine:
            for d, v in mine.items():
                if d in days:
                    total += v
        if self.remote is not None:
            total += self.remote.remote_spend(subject, days)
        return total + self._reserved.get(subject, 0)

    # --- admission and settlement ---------------------------------------------------------------

    def look(self, config: ConfigState, usage: UsageState, key: VirtualKey, position: int | None = None) -> Seen:
        """Read what admitting a request of `key` decides on, once: its sliding-minute counts (with
        rpm or tpm) and its key's and team's budget spend (with budgets)."""
        now = self.clock()
        w = self._roll(now)
        used = self._used(key.id, w) if key.rpm is not None or key.tpm is not None else (0, 0)
        team = config.teams.get(key.team_id) if key.team_id else None
        today = int(now // 86400)
        key_spent = team_spent = None
        if key.budget is not None or (team is not None and team.budget is not None):
            subjects = self._subjects_of(key.id, key.team_id)
            if key.budget is not None:
                key_spent = self.spent_nusd(usage, subjects[0], key.budget, today, position)
            if team is not None and team.budget is not None:
                team_spent = self.spent_nusd(usage, subjects[1], team.budget, today, position)
        return Seen(now, w, today, used, team, key_spent, team_spent)

    def admit(self, config: ConfigState, usage: UsageState, key: VirtualKey, estimate_nusd: int,
              position: int | None = None, estimate_tokens: int = 0, seen: Seen | None = None) -> Reservation:
        """Check limits and budgets for one request and hold its estimated cost and tokens (a
        token limit counts the estimate at once, so concurrent requests cannot all pass it).
        `seen`: what look() read for this request just before (read now if not given).
        Raises RateLimited, BudgetExceeded, or Unavailable when the unflushed-usage buffer is full."""
        if seen is None:
            seen = self.look(config, usage, key, position)
        now, w, used = seen.now, seen.w, seen.used
        headers: dict[str, str] = {}
        rpm, tpm = key.rpm, key.tpm
        if tpm is not None and estimate_tokens > tpm:
            raise LimitTooSmall(
                f"request too large for key {key.name!r}: it may use up to {estimate_tokens} tokens (input "
                f"estimated at 4 bytes per token, plus max_tokens), more than the key's whole limit of {tpm} "
                "tokens per minute, so no wait lets it through; shorten the input, lower max_tokens, or raise "
                "the limit with `shieldes key update --tpm`")
        self._split(key, seen, estimate_nusd, estimate_tokens)
        if rpm is not None or tpm is not None:
            req, tok = used
            # until what this request adds stops counting: the end of the next window
            resets = f"{(w + 2) * WINDOW - now:.3f}s"
            if rpm is not None:
                headers = {"x-ratelimit-limit-requests": str(rpm),
                           "x-ratelimit-remaining-requests": str(rpm - req - 1 if rpm > req else 0),
                           "x-ratelimit-reset-requests": resets}
            if tpm is not None:
                headers["x-ratelimit-limit-tokens"] = str(tpm)
                headers["x-ratelimit-remaining-tokens"] = str(tpm - tok if tpm > tok else 0)
                headers["x-ratelimit-reset-tokens"] = resets
            if rpm is not None and req >= rpm:
                reset = self._wait(key.id, w, rpm, 1)
                headers["x-ratelimit-remaining-requests"] = "0"
                headers["x-ratelimit-reset-requests"] = f"{reset:.3f}s"
                raise RateLimited(
                    f"rate limit reached for key {key.name!r}: all {rpm} requests per minute are used; "
                    f"retry after {retry_after_seconds(reset)}s or raise it with `shieldes key update --rpm`",
                    retry_after=reset, headers=headers,
                )
            if tpm is not None and (tok >= tpm or tok + estimate_tokens > tpm):
                this = "" if tok >= tpm else f" (used {tok}; this request may use up to {estimate_tokens})"
                reset = self._wait(key.id, w, tpm, max(1, estimate_tokens), tokens=True)
                headers["x-ratelimit-reset-tokens"] = f"{reset:.3f}s"
                raise RateLimited(
                    f"rate limit reached for key {key.name!r}: {tpm} tokens per minute{this}; "
                    f"retry after {retry_after_seconds(reset)}s, lower max_tokens, or raise it with "
                    "`shieldes key update --tpm`",
                    retry_after=reset, headers=headers,
                )
        if seen.key_spent is not None and key.budget is not None:
            check_budget(f"key {key.name!r}", key.budget, seen.key_spent, seen.today, estimate_nusd)
        team = seen.team
        if seen.team_spent is not None and team is not None and team.budget is not None:
            check_budget(f"team {team.name!r}", team.budget, seen.team_spent, seen.today, estimate_nusd)
        # buffered() is len(self._acc) unless a batch is waiting: skip the call on the common path
        if (self._batches or len(self._acc) >= self.buffer_max) and self.buffered() >= self.buffer_max:
            raise Unavailable(
                "this node cannot write usage to Postgres and its usage buffer is full; "
                "retry shortly or use another node, and check the database"
            )
        counts = self._cur.counts.get(key.id)
        if counts is None:
            self._cur.counts[key.id] = [1, estimate_tokens, 0]
        else:
            counts[0] += 1
            counts[1] += estimate_tokens
        res = Reservation(key.id, key.team_id, estimate_nusd, headers, estimate_tokens, w)
        if estimate_nusd:
            self._hold(res, estimate_nusd)  # the one place holds change: subclasses track them (gossip)
        return res

    def _split(self, key: VirtualKey, seen: Seen, estimate_nusd: int, estimate_tokens: int) -> None:
        """Admission's first step, on what it read once: a node alone has nothing to split; the
        cluster meter splits limits and budgets between nodes here (raising as admit does)."""

    def _subjects_of(self, key_id: str, team_id: str | None) -> tuple[str, ...]:
        """The budget subjects a request of this key spends on ("k:<key>", then "t:<team>")."""
        ck = (key_id, team_id)
        found = self._subjects.get(ck)
        if found is None:
            if len(self._subjects) > 100_000:  # bounded: keys come and go over a long uptime
                self._subjects.clear()
            found = ("k:" + key_id, "t:" + team_id) if team_id else ("k:" + key_id,)
            self._subjects[ck] = found
        return found

    def _hold(self, res: Reservation, nusd: int) -> None:
        reserved = self._reserved
        for subject in self._subjects_of(res.key_id, res.team_id):
            reserved[subject] = reserved.get(subject, 0) + nusd

    def release(self, res: Reservation) -> None:
        """The request ended without usage (upstream failure before any token)."""
        if res.done:
            return
        res.done = True
        if res.nusd:
            self._hold(res, -res.nusd)
        self._release_tokens(res, res.tokens)

    def _release_tokens(self, res: Reservation, tokens: int) -> None:
        """Hand back estimated tokens in the window they were counted in (if it is still kept)."""
        if tokens <= 0:
            return
        for win in (self._cur, self._prev):
            if win.window == res.window:
                counts = win.counts.get(res.key_id)
                if counts is not None:
                    counts[2] += tokens
                return

    def settle(self, res: Reservation, provider: str, model: str, prompt_tokens: int,
               completion_tokens: int, nusd: int, units: Units = NO_UNITS) -> None:
        """Record real usage of an admitted request: budgets see it at once, the flusher later.
        `units`: what a media call is billed in besides tokens, recorded in their own unit (seconds
        and characters count against the tpm limit as tokens do)."""
        if res.done:
            return
        res.done = True
        if res.nusd:
            self._hold(res, -res.nusd)
        now = self.clock()
        self._roll(now)
        used = prompt_tokens + completion_tokens + (units.counted() if units is not NO_UNITS else 0)
        if used < res.tokens:
            cur = self._cur
            if cur.window == res.window:  # admitted in this window (the usual case): _release_tokens, inline
                counts = cur.counts.get(res.key_id)
                if counts is not None:
                    counts[2] += res.tokens - used
            else:
                self._release_tokens(res, res.tokens - used)
        elif used > res.tokens:  # beyond the estimate: counts when it is known
            counts = self._cur.counts.get(res.key_id)
            if counts is None:
                counts = self._cur.counts[res.key_id] = [0, 0, 0]
            counts[1] += used - res.tokens
        hour = int(now // 3600)
        dk = (res.key_id, res.team_id, provider, model, hour)
        acc = self._acc.get(dk)
        if acc is None:
            if not self._acc and self.on_usage is not None:
                self.on_usage()  # (the flusher sleeps while there is nothing to append)
            self._acc[dk] = [1, prompt_tokens, completion_tokens, nusd, units.images, units.audio_seconds,
                             units.characters, units.web_searches, units.file_searches, units.containers,
                             units.tools_nusd]
        else:
            acc[0] += 1
            acc[1] += prompt_tokens
            acc[2] += completion_tokens
            acc[3] += nusd
            if units is not NO_UNITS:
                acc[4] += units.images
                acc[5] += units.audio_seconds
                acc[6] += units.characters
                acc[7] += units.web_searches
                acc[8] += units.file_searches
                acc[9] += units.containers
                acc[10] += units.tools_nusd
        if nusd:
            day = hour // 24
            acc_spend = self._acc_spend
            for subject in self._subjects_of(res.key_id, res.team_id):
                mine = self._pending.get(subject)
                if mine is None:
                    mine = self._pending[subject] = {}
                mine[day] = mine.get(day, 0) + nusd
                sk = (subject, day)
                acc_spend[sk] = acc_spend.get(sk, 0) + nusd

    # --- flusher side ---------------------------------------------------------------------------

    def buffered(self) -> int:
        """Unflushed deltas held in memory (the accumulator plus an unsent batch)."""
        n = len(self._acc)
        for b in self._batches:
            if not b.appended:
                n += len(b.deltas)
        return n

    def unflushed_by_key(self, usage: UsageState) -> dict[str, Totals]:
        """key_id -> what was settled here but is not yet in `usage` (not appended, or appended but
        not yet folded into the projection): requests, tokens, nUSD, media units and hosted tool uses."""
        durable = usage.durable_seq(self.node_id, self.boot_epoch)
        out: dict[str, Totals] = {}
        rows: list[tuple[str, list[int] | tuple[int, ...]]] = [(k, v) for (k, _, _, _, _), v in self._acc.items()]
        rows += [(d.key_id, sums_of(d)) for b in self._batches if not b.appended or b.seq > durable for d in b.deltas]
        for key_id, v in rows:
            t = out.get(key_id)
            if t is None:
                t = out[key_id] = Totals()
            t.requests += v[0]
            t.prompt_tokens += v[1]
            t.completion_tokens += v[2]
            t.cost_nusd += v[3]
            t.images += v[4]
            t.audio_seconds += v[5]
            t.characters += v[6]
            t.web_searches += v[7]
            t.file_searches += v[8]
            t.containers += v[9]
            t.tools_nusd += v[10]
        return out

    def cut_batch(self) -> Batch | None:
        """The batch to append next: the unsent one again (same seq, same content, so a retry after
        an ambiguous failure stays idempotent), else the accumulator as a new batch, else None."""
        for b in self._batches:
            if not b.appended:
                return b
        if not self._acc:
            return None
        self._seq += 1
        deltas = tuple(UsageDelta(k, t, p, m, h, *v) for (k, t, p, m, h), v in self._acc.items())
        batch = Batch(self._seq, deltas, self._acc_spend)
        self._acc, self._acc_spend = {}, {}
        self._batches.append(batch)
        return batch

    def batch_appended(self, batch: Batch) -> None:
        batch.appended = True
        self.flushed_seq = max(self.flushed_seq, batch.seq)

    def batch_taken_over(self, batch: Batch, stored: tuple[UsageDelta, ...] | None) -> bool:
        """The log already holds this batch's seq. Usually our own earlier append (a retry after an
        ambiguous failure: the same content). If a peer appended it on this boot's behalf (this
        node was paused or cut off and taken for dead), it holds what this node had gossiped, a part
        of the batch: the batch becomes that part and the rest goes back to the accumulator, out
        with the next seq. True if anything went back. `stored` None: unreadable, taken as ours."""
        if stored is None:
            return False
        held = {(d.key_id, d.team_id, d.provider, d.model, d.hour): d for d in stored}
        rest: dict[DeltaKey, list[int]] = {}
        for d in batch.deltas:
            dk = (d.key_id, d.team_id, d.provider, d.model, d.hour)
            h = held.get(dk)
            left = sums_of(d)
            if h is not None:
                left = [max(0, a - b) for a, b in zip(left, sums_of(h), strict=True)]
            if any(left):
                rest[dk] = left
        if not rest:
            return False
        batch.deltas = stored
        for dk, left in rest.items():
            acc = self._acc.setdefault(dk, [0] * DELTA_SUMS)
            for i, v in enumerate(left):
                acc[i] += v
            if left[3]:  # its spend is pending until the next seq is in the log, not this one
                for subject in self._subjects_of(dk[0], dk[1]):
                    sk = (subject, dk[4] // 24)
                    batch.spend[sk] = batch.spend.get(sk, 0) - left[3]
                    self._acc_spend[sk] = self._acc_spend.get(sk, 0) + left[3]
        return True

    def seq_taken(self, usage: UsageState) -> bool:
        """The log holds a flush seq of this boot that this node has not cut yet: a peer appended
        the accumulator's gossiped part on its behalf (it was paused or cut off). Flush now, so the
        rest gets a seq of its own (batch_taken_over) before anything else can happen to it."""
        return bool(self._acc) and usage.durable_seq(self.node_id, self.boot_epoch) > self._seq

    def drop_durable(self, usage: UsageState) -> None:
        """Forget pending spend the projection now holds (this node's usage up to its durable seq)."""
        durable = usage.durable_seq(self.node_id, self.boot_epoch)
        while self._batches and self._batches[0].appended and self._batches[0].seq <= durable:
            batch = self._batches.pop(0)
            for (subject, day), nusd in batch.spend.items():
                mine = self._pending.get(subject, {})
                left = mine.get(day, 0) - nusd
                if left:
                    mine[day] = left
                else:
                    mine.pop(day, None)
                    if not mine:
                        self._pending.pop(subject, None)

    def idle(self) -> bool:
        """Nothing left to append."""
        return not self._acc and all(b.appended for b in self._batches)

    def reserved(self) -> Mapping[str, int]:
        return self._reserved
