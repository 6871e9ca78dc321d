"""Snapshot format 3 (virtual keys as columns): a state decoded from it equals the fold that was
encoded, decides every later command the same way, folds the same later events to the same state,
and encodes to the same bytes; format 2 snapshots still decode."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.errors import CommandRejected
from shieldes.events.catalog import Event
from shieldes.projections.commands import Command, RevokeKey, decide
from shieldes.projections.config import apply_config
from shieldes.projections.keytable import KeyTable
from shieldes.projections.pmap import LayeredMap
from shieldes.projections.projector import Projection
from shieldes.projections.state import ConfigState
from shieldes.snapshots import codec as snapcodec
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
