"""The open-files limit a node serves under. Every client connection and every upstream connection
is a file descriptor, so the soft limit many systems start processes with (1024) caps a node at
about 500 concurrent streams; past it, new connections are closed as soon as they are accepted,
without an answer and without an error anywhere (libuv's way out of EMFILE). So a node raises its
soft limit to the hard one at start, and warns in its log while its open files near the limit."""

from __future__ import annotations

import os
from dataclasses import dataclass

CEILING = 1 << 20  # Linux's default nr_open: no soft limit above it is granted anyway
WARN_AT = 0.8  # share of the limit in use that starts a warning
CLEAR_AT = 0.7  # ... and that ends it (no warning per check around one threshold)
FEW_OPEN_FILES = 4096  # a hard limit below this is worth a warning at start


def wanted_soft_limit(soft: int, hard: int, infinity: int) -> int:
    """The soft limit to ask for: the hard one (at most CEILING), never lower than `soft`."""
    if soft == infinity:
        return soft
    target = CEILING if hard == infinity else min(hard, CEILING)
    return max(soft, target)


def raise_soft_limit() -> tuple[int, int] | None:
    """Raise this process's soft open-files limit as far as its hard limit lets it (children
    inherit it). (before, after); None where the platform has no such limit."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted_soft_limit(soft, hard, resource.RLIM_INFINITY)
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # (macOS refuses above its own OPEN_MAX)
            return soft, soft
    return soft, target


def soft_limit() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def open_count() -> int | None:
    """File descriptors open in this process (Linux); None where it cannot be read."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


@dataclass
class Headroom:
    """Whether a node is warning about its open files (a warning is logged when it starts, and
    a note when the pressure ends, not at every check)."""

    warning: bool = False

    def check(self, open_now: int, limit: int) -> str | None:
        """The line to log after a check, if any."""
        used = open_now / limit if limit > 0 else 0.0
        if not self.warning and used >= WARN_AT:
            self.warning = True
            return (f"open files at {open_now} of this process's limit of {limit} ({used:.0%}): past the limit, "
                    "new connections are dropped without an answer; raise the limit (`ulimit -n`, systemd "
                    "LimitNOFILE=, docker run --ulimit nofile=N:N) or add nodes")
        if self.warning and used < CLEAR_AT:
            self.warning = False
            return f"open files back to {open_now} of the limit of {limit} ({used:.0%})"
        return None
