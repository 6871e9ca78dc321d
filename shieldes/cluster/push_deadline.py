"""Per-target push deadlines (pure): how long a gossip push to one peer may take before it is given
up as not taken.

One fixed deadline for every push (`max(0.5 s, 4 gossip intervals)`) failed on a machine too loaded
to answer within it: every push timed out, for tens of seconds, so no peer took any of a node's
usage and a SIGKILL of that node lost all it had settled since its last append. Each target now
gets its own deadline from its recent pushes, the way TCP sets its retransmission timeout
(RFC 6298): a smoothed round trip `srtt` and its variation `rttvar` from the pushes it answered, the
deadline `max(base, srtt + 4 * rttvar)`; each push in a row that timed out doubles it (a push never
answered measures nothing); never above `cap` (the runtime uses half the node timeout, so a peer
taking pushes that slowly still hears from this node well before it would age out). The next
answer ends the doubling, and quick answers bring the deadline back to `base` as they pull `srtt`
and `rttvar` down.

A refused push (UNAVAILABLE: nothing listens, the peer is down or restarting) says nothing about
how fast the peer answers: it ends the doubling (a restarted peer starts fresh) and grows nothing.
Other failures (a refused message, a cancelled call) change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

ALPHA = 1 / 8  # weight of a new round trip in srtt (RFC 6298)
BETA = 1 / 4  # weight of a new deviation in rttvar
MAX_DOUBLINGS = 8  # enough to reach any cap from any base; keeps 1 << n small


class Outcome(Enum):
    ANSWERED = "answered"  # the peer answered (taken or not: it is reachable and this fast)
    TIMED_OUT = "timed_out"  # the deadline passed first: slow, paused or black-holed
    REFUSED = "refused"  # nothing listens there (down or restarting): not slow
    FAILED = "failed"  # anything else (cancelled, refused by gRPC): says nothing about speed


@dataclass(frozen=True)
class PushTimer:
    """What the deadline of the next push to one target is decided from."""

    srtt: float = 0.0  # smoothed round trip of answered pushes, seconds (0: none measured yet)
    rttvar: float = 0.0  # its mean deviation
    doublings: int = 0  # pushes timed out in a row since the last answer
    timeouts: int = 0  # pushes timed out in all (reported)


def deadline(timer: PushTimer, *, base: float, cap: float) -> float:
    """The deadline of the next push: at least `base`, at most `cap` (`base` if the cap is lower)."""
    rto = max(base, timer.srtt + 4 * timer.rttvar) if timer.srtt > 0 else base
    return min(max(base, cap), rto * (1 << timer.doublings))


def observe(timer: PushTimer, outcome: Outcome, rtt: float = 0.0) -> PushTimer:
    """The timer after a push ended with `outcome` (`rtt`: its round trip, when answered)."""
    if outcome is Outcome.ANSWERED:
        rtt = max(0.0, rtt)
        if timer.srtt <= 0:  # the first measurement (RFC 6298, 2.2)
            return replace(timer, srtt=rtt or 1e-6, rttvar=rtt / 2, doublings=0)
        rttvar = (1 - BETA) * timer.rttvar + BETA * abs(timer.srtt - rtt)
        return replace(timer, srtt=(1 - ALPHA) * timer.srtt + ALPHA * rtt, rttvar=rttvar, doublings=0)
    if outcome is Outcome.TIMED_OUT:
        return replace(timer, doublings=min(MAX_DOUBLINGS, timer.doublings + 1), timeouts=timer.timeouts + 1)
    if outcome is Outcome.REFUSED:
        return replace(timer, doublings=0)
    return timer
