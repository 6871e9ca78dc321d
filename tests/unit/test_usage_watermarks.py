"""Flush watermarks (UsageState.node_seqs) stay bounded: each node's two newest boots only, in the
live fold, in a replay after compaction and in a snapshot, an older release's snapshot included."""

from __future__ import annotations

from shieldes.events.catalog import UsageDelta, UsageRecorded
from shieldes.projections.projector import Projection
from shieldes.projections.usage import BOOTS_KEPT, UsageState, apply_usage
from shieldes.snapshots import codec as snapcodec

DELTA = UsageDelta("k1", None, "dep", "m", 500_000, 1, 10, 5, 100)


def test_only_each_nodes_newest_boots_keep_a_watermark() -> None:
    state = UsageState()
    seq = 0
    for epoch in range(1, 6):  # five boots of n1: restarts over the years
        for _ in range(3):
            seq += 1
            apply_usage(state, UsageRecorded("n1", epoch, seq, (DELTA,)))
    apply_usage(state, UsageRecorded("n2", 7, 1, (DELTA,)))
    assert BOOTS_KEPT == 2 and state.node_seqs == {"n1": {4: 12, 5: 15}, "n2": {7: 1}}
    # the boot before the newest one is still tracked: a leader may append its last flushes late
    apply_usage(state, UsageRecorded("n1", 4, 13, (DELTA,)))
    assert state.node_seqs["n1"] == {4: 13, 5: 15}
    # a long-dead boot's flush appended late counts its usage but leaves no watermark
    apply_usage(state, UsageRecorded("n1", 2, 99, (DELTA,)))
    assert state.node_seqs["n1"] == {4: 13, 5: 15}
    assert state.totals["k1"].requests == 15 + 1 + 1 + 1
    assert state.boot_floors() == {"n1": 5, "n2": 7}


def test_an_older_releases_snapshot_with_every_boots_watermark_loads_bounded() -> None:
    usage = UsageState(node_seqs={"n1": {e: e * 3 for e in range(1, 9)}})  # as an older release kept it
    projection = Projection(usage=usage, position=42)
    loaded = snapcodec.decode(*_sealed(projection))
    assert loaded.usage.node_seqs == {"n1": {7: 21, 8: 24}}
    assert snapcodec.usage_to_plain(loaded.usage)["node_seqs"] == {"n1": {"7": 21, "8": 24}}


def _sealed(projection: Projection) -> tuple[bytes, str, int]:
    encoded = snapcodec.encode(projection)
    return encoded.state, encoded.checksum, encoded.position
