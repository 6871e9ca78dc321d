"""A bound on failed sign-ins to the admin API and console, per client address and per node.

Two token buckets: one per client address (SHIELDES_ADMIN_SIGN_IN_FAILURES per minute, refilling
evenly) and one for the node (SHIELDES_ADMIN_SIGN_IN_FAILURES_TOTAL per minute). Every refused
credential takes a token; while a bucket is empty, a credential that could be guessed (the
operator-chosen SHIELDES_ADMIN_TOKEN, or anything wrong) is answered 429 without being looked at,
until a token refills (Retry-After). Tokens shieldes makes (`admin-token create`, SSO sessions) carry
256 random bits, beyond guessing, so they keep working: an attacker cannot lock operators out.
Held in memory on each node (no database I/O on sign-in), so the bound is per node: N nodes behind
one load balancer admit N times each bound in all (docs/security.md states it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

WINDOW = 60.0  # the buckets refill their whole size over a minute
MAX_ADDRESSES = 10_000  # addresses followed at once; beyond it the fullest buckets are forgotten


@dataclass
class _Bucket:
    tokens: float
    at: float


def _level(bucket: _Bucket, size: int, now: float) -> float:
    return min(float(size), bucket.tokens + (now - bucket.at) * size / WINDOW)


class SignInLimit:
    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address  # 0: no bound
        self.total = total
        self._addresses: dict[str, _Bucket] = {}
        self._node = _Bucket(float(total), 0.0)
        self.limited = 0  # attempts answered 429 (a metric)
        self.failed = 0  # credentials refused (a metric)

    def wait(self, address: str | None, now: float) -> float | None:
        """Seconds until `address` may try a guessable credential again; None: it may now."""
        waits = []
        if self.total and _level(self._node, self.total, now) < 1:
            waits.append((1 - _level(self._node, self.total, now)) * WINDOW / self.total)
        bucket = self._addresses.get(address or "")
        if self.per_address and bucket is not None and _level(bucket, self.per_address, now) < 1:
            waits.append((1 - _level(bucket, self.per_address, now)) * WINDOW / self.per_address)
        return max(waits) if waits else None

    def fail(self, address: str | None, now: float) -> bool:
        """Count a refused credential; True when it emptied a bucket (worth a log line)."""
        self.failed += 1
        emptied = False
        if self.total:
            level = _level(self._node, self.total, now)
            self._node = _Bucket(max(0.0, level - 1), now)
            emptied = level >= 1 > level - 1
        if self.per_address:
            key = address or ""
            old = self._addresses.pop(key, None)  # re-inserted last: the dict keeps recency order
            level = _level(old, self.per_address, now) if old is not None else float(self.per_address)
            self._addresses[key] = _Bucket(max(0.0, level - 1), now)
            emptied = emptied or level >= 1 > level - 1
            if len(self._addresses) > MAX_ADDRESSES:
                self._forget(now)
        return emptied

    def _forget(self, now: float) -> None:
        # full buckets say nothing an absent one does not; then the least recently failed go
        for key in [k for k, b in self._addresses.items() if _level(b, self.per_address, now) >= self.per_address]:
            del self._addresses[key]
        while len(self._addresses) > MAX_ADDRESSES:
            del self._addresses[next(iter(self._addresses))]


class SignInCollector(Collector):
    """`shieldes_admin_sign_in_failures_total{outcome}`, read at scrape time."""

    def __init__(self, limit: SignInLimit) -> None:
        self.limit = limit

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected at scrape time only

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("shieldes_admin_sign_in_failures", "Admin API and console sign-ins refused: "
                                     "refused (401) or limited (429, past the sign-in bound)", labels=["outcome"])
        family.add_metric(["refused"], self.limit.failed - self.limit.limited)
        family.add_metric(["limited"], self.limit.limited)
        yield family
