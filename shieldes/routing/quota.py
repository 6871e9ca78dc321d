"""Deployment quotas: what the whole cluster may send to one deployment (its provider's own rpm /
tpm quota, `shieldes provider add ... --rpm N --tpm N`), so N nodes together do not get the
provider to throttle all of them.

The same windows give the traffic figures operators see (`shieldes cluster status`, /metrics):
requests and tokens per deployment in the last 60 seconds, and calls in flight.

Each node takes an equal share, ceil(quota / alive nodes), over a sliding 60-second window of what
it sent. A deployment at its share is skipped by routing (the next target, then the fallback
groups) instead of being called into a 429. Bound: with a stable membership of N nodes the cluster
sends at most quota + N - 1 requests (tokens: + N - 1 times one request's tokens, as tokens are
counted when the answer arrives) in any 60 seconds. Pure apart from the injected clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0


def quota_of(options: Mapping[str, str], name: str) -> int | None:
    value = options.get(name)
    return int(value) if value else None


def share(quota: int, nodes: int) -> int:
    """This node's part of a cluster-wide quota."""
    return max(1, math.ceil(quota / max(1, nodes)))


@dataclass
class _Sent:
    requests: deque[float] = field(default_factory=deque)  # send times
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (answer time, tokens)
    token_sum: int = 0
    in_flight: int = 0  # calls sent and not answered yet (for streams: no first chunk yet)


@dataclass(frozen=True)
class Traffic:
    """What this node sent one deployment: in the last 60 seconds, and in flight now."""

    requests: int = 0
    tokens: int = 0
    in_flight: int = 0


@dataclass
class DeploymentQuotas:
    clock: Callable[[], float] = time.monotonic
    _sent: dict[str, _Sent] = field(default_factory=dict)

    def _window(self, name: str) -> _Sent:
        s = self._sent.get(name)
        if s is None:  # not setdefault: a _Sent (two deques) per call on the request path adds up
            s = self._sent[name] = _Sent()
        horizon = self.clock() - WINDOW_SECONDS
        while s.requests and s.requests[0] <= horizon:
            s.requests.popleft()
        while s.tokens and s.tokens[0][0] <= horizon:
            s.token_sum -= s.tokens.popleft()[1]
        return s

    def allows(self, name: str, options: Mapping[str, str], nodes: int) -> bool:
        """Whether this node may send one more request to deployment `name` now."""
        rpm, tpm = quota_of(options, "rpm"), quota_of(options, "tpm")
        if rpm is None and tpm is None:
            return True
        s = self._window(name)
        if rpm is not None and len(s.requests) >= share(rpm, nodes):
            return False
        return tpm is None or s.token_sum < share(tpm, nodes)

    def frees_in(self, name: str, options: Mapping[str, str], nodes: int) -> float:
        """Seconds until this node may send `name` one more request (0: it may now): when enough of
        its window's requests, and of its tokens, have left the 60-second window."""
        s = self._window(name)
        now = self.clock()
        wait = 0.0
        rpm, tpm = quota_of(options, "rpm"), quota_of(options, "tpm")
        if rpm is not None:
            over = len(s.requests) - share(rpm, nodes)  # this many more must leave, and one besides
            if over >= 0:
                wait = s.requests[over] + WINDOW_SECONDS - now
        if tpm is not None and s.token_sum >= share(tpm, nodes):
            left = s.token_sum
            for at, tokens in s.tokens:
                left -= tokens
                if left < share(tpm, nodes):
                    wait = max(wait, at + WINDOW_SECONDS - now)
                    break
        return max(0.0, wait)

    def sent(self, name: str) -> None:
        # each deque is trimmed as it grows (the reads trim both): one look at the clock
        s = self._sent.get(name)
        if s is None:
            s = self._sent[name] = _Sent()
        now = self.clock()
        requests = s.requests
        horizon = now - WINDOW_SECONDS
        while requests and requests[0] <= horizon:
            requests.popleft()
        requests.append(now)
        s.in_flight += 1

    def returned(self, name: str) -> None:
        """The call sent last to `name` got its answer (or failed)."""
        s = self._sent.get(name)
        if s is not None:
            s.in_flight = s.in_flight - 1 if s.in_flight > 0 else 0

    def answered(self, name: str, tokens: int) -> None:
        s = self._sent.get(name)
        if s is None:
            s = self._sent[name] = _Sent()
        now = self.clock()
        answers = s.tokens
        horizon = now - WINDOW_SECONDS
        while answers and answers[0][0] <= horizon:
            s.token_sum -= answers.popleft()[1]
        answers.append((now, tokens))
        s.token_sum += tokens

    def usage(self, name: str) -> tuple[int, int]:
        """(requests, tokens) this node sent to `name` in the last 60 seconds."""
        s = self._window(name)
        return len(s.requests), s.token_sum

    def traffic(self) -> dict[str, Traffic]:
        """Every deployment this node has called: its last 60 seconds and its calls in flight."""
        out = {}
        for name in list(self._sent):
            s = self._window(name)
            out[name] = Traffic(len(s.requests), s.token_sum, s.in_flight)
        return out
