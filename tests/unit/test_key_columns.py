"""Snapshot format 3 (virtual keys as columns): a state decoded from it equals the fold that was
encoded, decides every later command the same way, folds the same later events to the same state,
and encodes to the same bytes; format 2 snapshots still decode."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.errors import CommandRejected
from shieldes.events.catalog import Event
from shieldes.projections.commands import Command, RevokeKey, decide
from shieldes.projections.config import apply_config
from shieldes.projections.keytable import KeyTable, columns_of, keys_with, layered_key_maps, names_in_order
from shieldes.projections.pmap import LayeredMap
from shieldes.projections.projector import Projection
from shieldes.projections.state import Budget, ConfigState, VirtualKey
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots import key_columns
from tests.strategies import SETUP, commands


def _fold(state: ConfigState, cmds: list[Command]) -> tuple[ConfigState, list[list[Event] | str]]:
    """Each command decided then folded; the decisions (events, or the refusal's message)."""
    decisions: list[list[Event] | str] = []
    for cmd in cmds:
        try:
            events = decide(state, cmd)
        except CommandRejected as exc:
            decisions.append(exc.message)
            continue
        decisions.append(events)
        for e in events:
            state = apply_config(state, e)
    return state, decisions


def _round_trip(config: ConfigState, fmt: int) -> ConfigState:
    projection = Projection(config)
    projection.position, projection.config_tip = 7, (7, "ab" * 32)
    snap = snapcodec.encode(projection, fmt=fmt)
    assert snap.format == fmt
    return snapcodec.decode(snap.state, snap.checksum, snap.position).config


@settings(max_examples=80, deadline=None)
@given(st.lists(commands, max_size=30), st.lists(commands, max_size=15), st.sampled_from([2, 3]))
def test_a_snapshot_decodes_to_the_fold_and_decides_and_folds_the_same(
    before: list[Command], after: list[Command], fmt: int
) -> None:
    folded, _ = _fold(ConfigState(), SETUP + before)
    restored = _round_trip(folded, fmt)
    assert restored == folded
    assert dict(restored.key_ids_by_hash) == dict(folded.key_ids_by_hash)
    assert dict(restored.key_ids_by_name) == dict(folded.key_ids_by_name)
    live, live_decisions = _fold(folded, after)
    resumed, resumed_decisions = _fold(restored, after)
    assert resumed_decisions == live_decisions
    assert resumed == live
    assert all(resumed.key_by_hash(h) == live.key_by_hash(h) for h in live.key_ids_by_hash)
    # the same state encodes to the same bytes, however it was reached
    assert snapcodec.encode(Projection(resumed)).checksum == snapcodec.encode(Projection(live)).checksum


def test_format_3_keeps_the_keys_as_columns_under_a_persistent_overlay() -> None:
    folded, _ = _fold(ConfigState(), SETUP)
    restored = _round_trip(folded, 3)
    assert isinstance(restored.keys, LayeredMap)
    assert isinstance(restored.keys.base, KeyTable)
    assert restored.keys["key_id0"].budget is not None and restored.keys["key_id0"].models == ("gpt-4o",)
    revoked = decide(restored, RevokeKey("a"))
    after = apply_config(restored, revoked[0])
    assert after.keys["key_id0"].revoked and "hash-a" not in after.key_ids_by_hash
    assert not restored.keys["key_id0"].revoked and "hash-a" in restored.key_ids_by_hash  # untouched


def test_a_format_3_snapshot_with_unknown_key_fields_is_refused_not_misread() -> None:
    folded, _ = _fold(ConfigState(), SETUP)
    projection = Projection(folded)
    plain = orjson.loads(snapcodec.projection_to_json(projection))
    plain["config"]["key_columns"]["optional"]["colour"] = [[0], ["red"]]
    snap = snapcodec.seal(orjson.dumps(plain), 0)  # sealed by the editor: only the layout is wrong
    with pytest.raises(snapcodec.SnapshotCorrupt, match="colour"):
        snapcodec.decode(snap.state, snap.checksum, 0)


def test_keys_loaded_as_columns_and_changed_since_encode_as_the_same_keys_built_one_by_one() -> None:
    """The column-wise merge a node runs when it snapshots what it loaded: new keys sorting before,
    between and after the loaded ones, changed keys, sparse fields set and cleared."""
    def key(i: str, **kw: Any) -> VirtualKey:
        return VirtualKey(f"key_{i}", f"n{i}", f"h{i}", "sk", kw.get("models"), kw.get("team"), None,
                          kw.get("revoked", False), kw.get("rpm"), None, kw.get("budget"))

    loaded = {k.id: k for k in (key("b", rpm=5), key("d", revoked=True), key("f", team="t", models=("m",)),
                                key("h", budget=Budget(1.0, "1d")))}
    table = KeyTable(columns_of(loaded))
    layered: Any = LayeredMap(table)
    for k in (key("a", rpm=1), key("c"), key("e", revoked=True), key("z", team="t2"), key("b", revoked=True),
              key("f", team=None, models=None, rpm=9)):
        layered = layered.set(k.id, k)
    expected = {**loaded, **dict(layered.items())}
    assert columns_of(layered) == columns_of(expected)
    assert key_columns.to_plain(layered) == key_columns.to_plain(expected)  # the same bytes, rows in order
    assert KeyTable(columns_of(layered)) == expected
    for field in ("budget", "rpm", "team_id", "revoked"):  # what a scan for one field reads
        assert sorted(k.id for k in keys_with(layered, field)) == sorted(k.id for k in keys_with(expected, field))
    assert [k.id for k in keys_with(layered, "team_id")] == ["key_z"]  # key_f's team was cleared


@settings(max_examples=40, deadline=None)
@given(st.sets(st.text(min_size=1, max_size=6), max_size=40), st.lists(st.text(max_size=6), max_size=20))
def test_a_key_is_found_by_id_the_same_before_and_after_the_id_index_is_built(
    ids: set[str], probes: list[str]
) -> None:
    keys = {i: VirtualKey(i, f"n{i}", f"h{i}", "sk", None, None, None, False, None, None, None) for i in ids}
    table = KeyTable(columns_of(keys))
    searched = [(p in table, table.get(p)) for p in [*ids, *probes]]
    table.warm()
    assert searched == [(p in table, table.get(p)) for p in [*ids, *probes]]
    assert searched == [(p in keys, keys.get(p)) for p in [*ids, *probes]]


def test_a_format_3_snapshot_with_key_ids_out_of_order_is_refused() -> None:
    folded, _ = _fold(ConfigState(), SETUP)
    plain = orjson.loads(snapcodec.projection_to_json(Projection(folded)))
    columns = plain["config"]["key_columns"]
    assert len(columns["id"]) > 1
    columns["id"].reverse()  # a lookup by binary search would miss keys
    snap = snapcodec.seal(orjson.dumps(plain), 0)
    with pytest.raises(snapcodec.SnapshotCorrupt, match="out of order"):
        snapcodec.decode(snap.state, snap.checksum, 0)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.text(max_size=5), max_size=30), st.sets(st.text(max_size=5), max_size=10),
       st.one_of(st.none(), st.text(max_size=5)))
def test_names_in_order_over_loaded_columns_and_later_keys_are_every_name_above_the_cursor_sorted(
    loaded: set[str], later: set[str], after: str | None
) -> None:
    """What a page of `GET /admin/v1/keys` walks instead of sorting every key again."""
    def key(name: str) -> VirtualKey:
        return VirtualKey(f"id-{name}", name, f"h-{name}", "sk", None, None, None, False, None, None, None)

    config = key_columns.from_plain(key_columns.to_plain({key(n).id: key(n) for n in loaded}))
    _, _, by_name = layered_key_maps(config)
    for name in later:  # created after the snapshot (some names also in it: updated in place)
        by_name = by_name.set(name, f"id-{name}")
    expected = sorted(n for n in loaded | later if after is None or n > after)
    assert list(names_in_order(by_name, after)) == expected
    assert list(names_in_order(dict(by_name.items()), after)) == expected  # any other map: sorted


@settings(max_examples=40, deadline=None)
@given(st.lists(commands, max_size=30), st.sampled_from([3, 5]))
def test_a_snapshot_made_in_slices_is_the_same_bytes(cmds: list[Command], fmt: int) -> None:
    """A serving node's snapshot sorts the keys, encodes their columns and reads the usage a slice
    at a time (so no one call holds the GIL, or the event loop, for a million keys): slices of one
    give the bytes one slice gives."""
    from shieldes.projections import keytable
    from shieldes.projections.usage import Totals

    folded, _ = _fold(ConfigState(), SETUP + cmds)
    projection = Projection(folded)
    projection.position, projection.config_tip = 7, (7, "ab" * 32)
    for i, key_id in enumerate(folded.keys):
        projection.usage.totals[key_id] = Totals(i, 2 * i, 3 * i, 4 * i)
        projection.usage.key_daily_cost[key_id] = {20400: i, 20401: i + 1}
    whole = snapcodec.projection_to_json(projection, fmt)
    saved = keytable.SORT_SLICE, snapcodec.JSON_SLICE, snapcodec.USAGE_SLICE
    try:
        keytable.SORT_SLICE = snapcodec.JSON_SLICE = snapcodec.USAGE_SLICE = 1
        steps = list(snapcodec.usage_to_plain_steps(projection.usage, fmt))
        assert steps.count(None) == 2 * len(folded.keys)  # a turn of the loop after each key's totals, each's costs
        assert snapcodec.projection_to_json(projection, fmt) == whole
    finally:
        keytable.SORT_SLICE, snapcodec.JSON_SLICE, snapcodec.USAGE_SLICE = saved
