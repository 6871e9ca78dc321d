"""Code interpreter containers billed once per session, as OpenAI bills them.

OpenAI bills a container per 20-minute session it is active in, not per response that names it: a
conversation whose turns run code in the same container (`container: "cntr_..."`, or `auto`
reusing the live one) pays for it once per session. An answer names the container of each
`code_interpreter_call` item, so a node remembers when it billed each id and bills it again only
once its session is over. What a node remembers is its own (no I/O on the hot path): a container
whose turns are served by several nodes in one session is billed once by each of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

SESSION_SECONDS = 20 * 60  # OpenAI's code interpreter session
MOST_REMEMBERED = 100_000  # ids of live sessions kept; past it the oldest is forgotten (billed again)


class ContainerSessions:
    """When each container id seen lately began its billed session, oldest first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, session: float = SESSION_SECONDS) -> None:
        self.clock = clock
        self.session = session
        self._began: dict[str, float] = {}

    def bill(self, ids: Iterable[str]) -> int:
        """How many of `ids` (the containers one answer ran code in) start a billed session now:
        the ones not billed within the last session's length."""
        now = self.clock()
        began = self._began
        while began:  # sessions that are over, oldest first (insertion order is billing order)
            oldest = next(iter(began))
            if now - began[oldest] < self.session and len(began) <= MOST_REMEMBERED:
                break
            del began[oldest]
        new = 0
        for cid in set(ids):
            if cid not in began:
                began[cid] = now
                new += 1
        return new
