"""Rolling upgrades, the pure parts: what a node reads, which appends a live node could not apply,
and a projection that skips what it cannot read while applying the rest."""

from __future__ import annotations

from datetime import UTC, datetime

from shieldes.events.catalog import ALL_EVENTS
from shieldes.events.codec import Codec
from shieldes.events.compat import BASELINE_READS, reads_of, unreadable_by
from shieldes.events.store import RecordedEvent
from shieldes.projections.projector import Projection


def test_reads_cover_the_whole_catalog_and_the_baseline() -> None:
    reads = reads_of(Codec())
    assert set(reads) == {c.TYPE for c in ALL_EVENTS}
    assert all(reads.get(t, 0) >= v for t, v in BASELINE_READS.items())  # never reads less than before


def test_unreadable_by_names_each_node_and_version() -> None:
    nodes = {"a": {"x": 2}, "b": {"x": 1}, "c": None}
    assert unreadable_by([("x", 1)], {"a": {"x": 2}, "b": {"x": 1}}) == []
    problems = unreadable_by([("x", 2), ("x", 2)], nodes)
    assert [(p.node_id, p.node_reads) for p in problems] == [("b", 1), ("c", 0)]
    assert "node b is alive and reads x up to v1" in problems[0].message()
    assert "upgrade node c first" in problems[1].message()
    assert unreadable_by([("virtual_key.revoked", 1)], {"legacy": None}) == []  # baseline types are fine


def _rec(position: int, type_: str, data: dict[str, object], version: int = 1) -> RecordedEvent:
    return RecordedEvent(position, "config", type_, version, data, {}, datetime.now(UTC), None, f"h{position}")


def test_projection_skips_unreadable_events_and_applies_the_rest() -> None:
    p = Projection()
    p.apply(_rec(1, "team.created", {"id": "t1", "name": "a"}))
    p.apply(_rec(2, "team.renamed", {"id": "t1", "name": "b"}))  # a newer release's type
    p.apply(_rec(3, "team.created", {"id": "t2", "name": "c"}, version=9))  # a newer version
    p.apply(_rec(4, "team.created", {"id": "t3", "name": "d"}))
    assert p.position == 4 and p.config_tip == (4, "h4")
    assert set(p.config.teams) == {"t1", "t3"}
    assert [(u.position, u.type) for u in p.unreadable] == [(2, "team.renamed"), (3, "team.created")]
    assert p.unreadable_count == 2 and "newer than this shieldes" in p.unreadable[1].reason


async def test_a_projection_that_skipped_events_writes_no_snapshot() -> None:
    import pytest

    from shieldes.snapshots.store import SnapshotRefused, save_snapshot

    p = Projection()
    p.apply(_rec(1, "team.renamed", {"id": "t1", "name": "b"}))
    with pytest.raises(SnapshotRefused, match=r"skipped 1 event\(s\).*team.renamed"):
        await save_snapshot(None, p, node_id="n", keep=1)  # type: ignore[arg-type]
