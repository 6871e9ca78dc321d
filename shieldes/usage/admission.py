"""What admitting a request decides on: the counters it reads once (Seen) and the pure decisions
on them (sliding-minute counts and waits, budget checks and their messages)."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, inf, nextafter

from shieldes.errors import BudgetExceeded
from shieldes.projections.periods import period_reset_at
from shieldes.projections.state import Budget, Team, VirtualKey

WINDOW = 60  # seconds per rate-limit window
NUSD = 1_000_000_000


def usd(nusd: int) -> str:
    """Dollars as an operator reads them: cents at least, down to a millionth, never an exponent
    ($20.00, $0.50, $0.00001, $0.000115)."""
    text = f"{nusd / NUSD:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def renewal(period: str, today: int) -> str:
    """When waiting frees budget: a calendar month starts afresh; a rolling window of N days lets
    its oldest day's spend go."""
    reset = period_reset_at(period, today).strftime("%Y-%m-%dT%H:%M:%SZ")
    if period.endswith("mo"):
        return f"the next month starts at {reset}"
    return f"the oldest day of the {period} window drops out at {reset}"


def budget_message(what: str, budget: Budget, spent: int, estimate: int, today: int) -> str:
    limit = budget.limit_nusd
    used = (f"budget exceeded for {what}: {usd(spent)} of {usd(limit)} spent or held by "
            f"requests in flight in the {budget.period} period")
    if spent >= limit:
        return f"{used}; {renewal(budget.period, today)}, or raise it with `shieldes budget set`"
    cost = (f"{used}, and this request may cost up to {usd(estimate)} (prompt, max_tokens and the uses of the "
            "hosted tools it offers)")
    lower = "lower max_tokens (or bound hosted tools: max_tool_calls, max_uses)"
    if estimate > limit:  # no wait helps: the request alone may cost more than the whole budget
        return f"{cost}, more than the whole budget; {lower}, or raise it with `shieldes budget set`"
    return f"{cost}; {lower}, wait ({renewal(budget.period, today)}), or raise it with `shieldes budget set`"


def check_budget(what: str, budget: Budget, spent: int, today: int, estimate: int) -> None:
    """Fail closed: spent (durable + unflushed + peers' pending) + reserved by requests in flight
    + this request's estimate must fit in the budget."""
    limit = budget.limit_nusd
    if spent >= limit or spent + estimate > limit:
        raise BudgetExceeded(budget_message(what, budget, spent, estimate, today), frees_at=frees_at(budget, today))


def frees_at(budget: Budget, today: int) -> float:
    """Unix time when waiting frees some of `budget`: its period's reset."""
    return period_reset_at(budget.period, today).timestamp()


@dataclass(slots=True)
class Seen:
    """What one admission read of a key's counters (Meter.look): every decision about the request
    (its completion cap, the cluster split, the checks) is made on these same values. Not frozen:
    one is built per request and read only (a frozen dataclass sets each field through a C call)."""

    now: float
    w: int  # the current rate window
    today: int  # unix day
    used: tuple[int, int]  # (requests, tokens) in the sliding minute; (0, 0) without rpm and tpm
    team: Team | None
    key_spent: int | None  # nUSD spent or held in the key's budget period; None without a budget
    team_spent: int | None  # the same for its team's budget

    def budget_left(self, key: VirtualKey) -> int | None:
        """nUSD the tightest budget (the key's or its team's) has left, or None without one."""
        left: int | None = None
        if self.key_spent is not None and key.budget is not None:
            left = key.budget.limit_nusd - self.key_spent
        if self.team_spent is not None and self.team is not None and self.team.budget is not None:
            room = self.team.budget.limit_nusd - self.team_spent
            left = room if left is None else min(left, room)
        return left

    def tokens_left(self, key: VirtualKey) -> int | None:
        """Tokens the key's tpm limit has left in the sliding minute, or None without one."""
        return None if key.tpm is None else key.tpm - self.used[1]


def sliding(cur: int, prev: int, elapsed: float) -> int:
    """What a sliding minute counts `elapsed` seconds into a window holding `cur`, after one holding
    `prev`: the previous window's part the last 60 s still cover, as if spread evenly over it,
    rounded up, so that with whole counts `sliding(...) + need <= limit` is exactly `cur + prev·(1 -
    elapsed/60) + need <= limit` (a floor let a 1-rpm key's request at 11:59:59 be followed by
    another at 12:00:00). `prev * left / WINDOW`, not `prev * (1 - elapsed / WINDOW)`: when the
    exact part is whole the product is a whole multiple of 60 and every step is exact (9 * (1 -
    40/60) is 3.0000000000000004, which would round up to 4). (Meter._used computes it so, inline.)"""
    left = WINDOW - elapsed
    return cur + ceil(prev * left / WINDOW) if left > 0.0 else cur


def _faded(prev: int, room: int) -> float:
    """The first instant (seconds into the window after it) at which a window that held `prev`
    counts at most `room` < `prev`, as `sliding` rounds it."""
    at = WINDOW - WINDOW * room / prev
    while ceil(prev * (WINDOW - at) / WINDOW) > room:  # rounding can leave `at` an ulp early
        at = nextafter(at, inf)
    return at


def sliding_wait(cur: int, prev: int, limit: int, need: int, elapsed: float) -> float:
    """Seconds until `need` more fit under `limit` in that sliding minute (nothing more admitted):
    at `elapsed` + this, `sliding(cur, prev, ...) + need <= limit`; an instant earlier it is not."""
    room = limit - need - cur  # what the previous window's weighted part must shrink to
    if room >= 0:
        if prev <= room:
            return 0.0
        return max(0.0, _faded(prev, room) - elapsed)
    # this window alone holds too much: once it ends, it fades like a previous window
    rest = max(0, limit - need)
    return WINDOW - elapsed + (_faded(cur, rest) if cur > rest else 0.0)
