"""The seal of a snapshot's parts: an HMAC-SHA256 keyed from SHIELDES_CLUSTER_SECRET when the
writer has one (someone with write access to the table but not the secret cannot forge a
snapshot), else a plain sha256 (detects corruption only). Standard library only: a teams-only
read (`team list`) checks a seal without importing the whole snapshot codec."""

from __future__ import annotations

import hashlib
import hmac

MAC_PREFIX = "hmac-sha256:"


class SnapshotCorrupt(Exception):
    """The bytes do not verify or do not decode; the loader skips such a snapshot."""


def mac_key(cluster_secret: str | None) -> bytes | None:
    """The snapshot sealing key: derived from the cluster secret (never the secret itself)."""
    if not cluster_secret:
        return None
    return hmac.new(cluster_secret.encode(), b"shieldes-snapshot-seal", hashlib.sha256).digest()


def seal_of(state: bytes, key: bytes | None) -> str:
    if key is None:
        return hashlib.sha256(state).hexdigest()
    return MAC_PREFIX + hmac.new(key, state, hashlib.sha256).hexdigest()


def check_seal(state: bytes, checksum: str, key: bytes | None) -> None:
    """A reader holding the key accepts only snapshots sealed with it; a reader without one can
    check a plain checksum only."""
    if key is not None and not checksum.startswith(MAC_PREFIX):
        raise SnapshotCorrupt("not sealed with the cluster secret (written by a process without "
                              "SHIELDES_CLUSTER_SECRET, or forged)")
    if key is None and checksum.startswith(MAC_PREFIX):
        raise SnapshotCorrupt("sealed with a cluster secret; set SHIELDES_CLUSTER_SECRET to use it")
    if not hmac.compare_digest(seal_of(state, key), checksum):
        raise SnapshotCorrupt("seal mismatch" if key is not None else "checksum mismatch")
