"""Properties behind snapshots and compaction, on pure folds (no database):
- decode(encode(state at k)) + events after k == the fold of every event;
- replacing raw usage events by their rollups (placed at any of their positions) gives the same
  usage state, in any order, including per-day pruning and flush watermarks."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes import db
from shieldes.events.catalog import (
    CONFIG_STREAM,
    BudgetRemoved,
    BudgetSet,
    Event,
    PricingSet,
    UsageDelta,
    UsageRecorded,
    UsageRolledUp,
    VirtualKeyCreated,
    VirtualKeyRevoked,
)
from shieldes.events.codec import Codec
from shieldes.events.store import RecordedEvent
from shieldes.projections.projector import Projection
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.rollups import _runs_and_chunks, chunks_wanted, fold_deltas, plan_chunks, plan_rollups

KEYS = ("a", "b", "c")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CODEC = Codec()

deltas = st.builds(
    UsageDelta, st.sampled_from(KEYS), st.sampled_from([None, "t1"]), st.sampled_from(["p1", "p2"]),
    st.just("m"), st.integers(480_000, 480_000 + 24 * 400),  # > DAYS_KEPT days: pruning happens
    st.integers(0, 3), st.integers(0, 500), st.integers(0, 500), st.integers(0, 10**7),
)
flushes = st.builds(UsageRecorded, st.sampled_from(["n1", "n2"]), st.integers(1, 2), st.integers(1, 50),
                    st.lists(deltas, min_size=1, max_size=4).map(tuple))
config = st.one_of(
    st.builds(PricingSet, st.sampled_from(["m", "m2"]), st.floats(0, 10), st.floats(0, 10)),
    st.sampled_from(KEYS).map(lambda k: VirtualKeyRevoked(k)),
    st.builds(lambda k, a: BudgetSet("key", k, a, "30d"), st.sampled_from(KEYS),
              st.one_of(st.none(), st.floats(0, 100))),
    st.sampled_from(KEYS).map(lambda k: BudgetRemoved("key", k)),
)


def recorded(events: list[Event]) -> list[RecordedEvent]:
    out = []
    for i, e in enumerate(events, start=1):
        type_, version, data = CODEC.encode(e)
        stream = "usage:x" if isinstance(e, UsageRecorded | UsageRolledUp) else CONFIG_STREAM
        out.append(RecordedEvent(i, stream, type_, version, data, {}, T0))
    return out


def log_of(body: list[Event]) -> list[Event]:
    return [VirtualKeyCreated(k, f"key-{k}", f"h-{k}", "sk", None) for k in KEYS] + body


def fold(events: list[RecordedEvent]) -> Projection:
    p = Projection()
    p.apply_all(sorted(events, key=lambda e: e.position))
    return p


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(flushes, config), max_size=30), st.data())
def test_snapshot_plus_tail_equals_full_fold(body: list[Event], data: st.DataObject) -> None:
    events = recorded(log_of(body))
    k = data.draw(st.integers(0, len(events)))
    restored = snapcodec.decode(*_sealed(fold(events[:k])))
    restored.apply_all(events[k:])
    full = fold(events)
    assert (restored.position, restored.config, restored.usage) == (full.position, full.config, full.usage)


def _sealed(p: Projection) -> tuple[bytes, str, int]:
    s = snapcodec.encode(p)
    assert snapcodec.encode(p).checksum == s.checksum  # deterministic
    return s.state, s.checksum, s.position


@settings(max_examples=60, deadline=None)
@given(st.lists(flushes, min_size=1, max_size=25), st.data())
def test_rollups_anywhere_below_keep_usage_state(body: list[Event], data: st.DataObject) -> None:
    events = recorded(log_of(body))
    usage = [e for e in events if e.type == "usage.recorded"]
    cutoff = data.draw(st.integers(0, len(usage)))
    folded_events = usage[:cutoff]
    # keep the highest-seq flush of each (node, epoch), as compaction does
    best: dict[tuple[str, int], RecordedEvent] = {}
    for e in folded_events:
        key = (e.data["node_id"], e.data["epoch"])
        if key not in best or e.data["seq"] >= best[key].data["seq"]:
            best[key] = e
    replaced = [e for e in folded_events if e not in best.values()]
    rest = [e for e in events if e not in replaced]
    if replaced:
        decoded = [CODEC.decode(e.type, e.version, e.data) for e in replaced]
        folded = fold_deltas(d for ev in decoded for d in ev.deltas)  # type: ignore[attr-defined]
        for position, _hour, part in plan_rollups(folded, [e.position for e in replaced], max_deltas=2):
            type_, version, d = CODEC.encode(UsageRolledUp(len(replaced), 0, 0, part))
            rest.append(RecordedEvent(position, "usage-rollup", type_, version, d, {}, T0))
    assert fold(rest).usage == fold(events).usage


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=40).map(sorted), st.sets(st.integers(0, 500), min_size=1, max_size=40),
       st.integers(1, 5))
def test_the_newest_wanted_positions_plan_as_all_of_them(hours: list[int], positions: set[int], size: int) -> None:
    """Compaction reads only the newest chunks_wanted positions of a partition, not all its raw
    events: the layout is the one every position gives."""
    newest = sorted(positions)[-chunks_wanted(hours, size):] if hours else []
    assert plan_chunks(hours, newest or sorted(positions), size) == plan_chunks(hours, sorted(positions), size)


def _walked_runs(hours: list[int]) -> list[tuple[int, int, int]]:
    runs: list[tuple[int, int, int]] = []
    for i, hour in enumerate(hours):
        if runs and runs[-1][0] == hour:
            runs[-1] = (hour, runs[-1][1], i + 1)
        else:
            runs.append((hour, i, i + 1))
    return runs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=60).map(sorted), st.integers(1, 5))
def test_runs_found_by_bisection_are_those_an_item_by_item_walk_finds(hours: list[int], size: int) -> None:
    runs, chunks = _runs_and_chunks(hours, size)
    assert runs == _walked_runs(hours)
    assert [(a, b) for _, _, a, b in chunks] == [(a, min(a + size, stop)) for _, first, stop in runs
                                                  for a in range(first, stop, size)]


def test_snapshots_of_an_older_schema_revision_still_load() -> None:
    """A snapshot holds the projection, defined by the event catalog, not by the SQL schema."""
    assert snapcodec.is_compatible("0006", snapcodec.FORMAT)
    assert snapcodec.is_compatible(db.SCHEMA_HEAD, snapcodec.FORMAT)
    assert not snapcodec.is_compatible("9999", snapcodec.FORMAT)  # a newer release's
    assert not snapcodec.is_compatible(db.SCHEMA_HEAD, 1)
