"""What tells that files changed without reading them: for certificates renewed in place (certbot,
cert-manager's Secret volumes, a `mv`), which a node serves anew without a restart."""

from __future__ import annotations

import os
from pathlib import Path

Fingerprint = tuple[tuple[int, int, int], ...] | None


def fingerprint(*paths: Path) -> Fingerprint:
    """Inode, size and modification time of each file (None: one is missing, e.g. in the middle
    of a swap). A renewal written in place or swapped in (Kubernetes' symlinked Secret volumes)
    changes at least one."""
    try:
        stats = [os.stat(path) for path in paths]
    except OSError:
        return None
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)
