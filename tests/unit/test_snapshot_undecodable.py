"""Sealed bytes that are no snapshot of this layout raise SnapshotCorrupt with the reason a reader
logs when it skips them, from the whole decode and the config-only one alike (the three share the
handling: these pin what it says)."""

from __future__ import annotations

import orjson
import pytest
import zstandard

from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.seal import seal_of


def _sealed(payload: bytes, *, compress: bool = True) -> tuple[bytes, str]:
    state = zstandard.ZstdCompressor().compress(payload) if compress else payload
    return state, seal_of(state, None)


CASES = [
    (_sealed(b"not zstd at all", compress=False), r"^undecodable: ZstdError: "),
    (_sealed(b"{not json"), r"^undecodable: JSONDecodeError: "),
    (_sealed(b"[1, 2]"), r"^undecodable: TypeError: "),
    (_sealed(orjson.dumps({"position": 7})), r"^undecodable: KeyError: 'format'$"),
    (_sealed(orjson.dumps({"format": 99, "position": 7})), r"^header says format 99 position 7$"),
    (_sealed(orjson.dumps({"format": snapcodec.FORMAT, "position": 7})),
     r"^undecodable: KeyError: '(config|usage|config_tip)'$"),
    (_sealed(orjson.dumps({"format": snapcodec.FORMAT, "position": 7, "config": {}, "usage": {},
                           "config_tip": [1]})), r"^undecodable: (KeyError|ValueError): "),
]


@pytest.mark.parametrize(("sealed", "reason"), CASES)
def test_a_snapshot_that_does_not_decode_is_corrupt_with_its_reason(sealed: tuple[bytes, str], reason: str) -> None:
    state, checksum = sealed
    for decode in (snapcodec.decode, snapcodec.decode_config):
        with pytest.raises(snapcodec.SnapshotCorrupt, match=reason):
            decode(state, checksum, 7)
