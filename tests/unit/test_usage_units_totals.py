"""The durable usage totals carry a key's media units (what GET /admin/v1/usage/live shows): folded
from flushes and rollups, kept by a snapshot; a snapshot of an older layout written once units
existed (schema 0017 on) left them out, so it is not loaded, and compaction is not pinned by it."""

from __future__ import annotations

from shieldes import db
from shieldes.events.catalog import UsageDelta, UsageRecorded, UsageRolledUp
from shieldes.projections.projector import Projection
from shieldes.projections.usage import Totals, UsageState, apply_usage
from shieldes.snapshots import codec as snapcodec

IMAGES = UsageDelta("k1", None, "dep", "dall-e-3", 500_000, 1, 0, 0, 80_000_000, images=2)
SPEECH = UsageDelta("k1", None, "dep", "tts-1", 500_000, 1, 0, 0, 400, characters=27)
CHAT = UsageDelta("k1", None, "dep", "gpt-4o", 500_000, 1, 10, 5, 100)
HEARD = UsageDelta("k2", None, "dep", "whisper-1", 500_001, 1, 0, 0, 600, audio_seconds=61)


def test_flushes_and_rollups_fold_media_units_per_key() -> None:
    state = UsageState()
    apply_usage(state, UsageRecorded("n1", 1, 1, (IMAGES, CHAT)))
    apply_usage(state, UsageRecorded("n1", 1, 2, (SPEECH, HEARD)))
    apply_usage(state, UsageRolledUp(3, 1, 5, (IMAGES,)))
    assert state.totals["k1"] == Totals(4, 10, 5, 80_000_000 * 2 + 400 + 100, images=4, characters=27)
    assert state.totals["k2"] == Totals(1, 0, 0, 600, audio_seconds=61)
    added = Totals()
    for d in (IMAGES, SPEECH, CHAT, IMAGES):
        added.add(d)
    assert added == state.totals["k1"]


def test_a_snapshot_keeps_the_units_and_an_older_layout_reads_as_none() -> None:
    usage = UsageState()
    apply_usage(usage, UsageRecorded("n1", 1, 1, (IMAGES, SPEECH, HEARD)))
    snap = snapcodec.encode(Projection(usage=usage, position=9))
    assert snap.format == 5
    assert snapcodec.decode(snap.state, snap.checksum, 9).usage.totals == usage.totals
    old = snapcodec.encode(Projection(usage=usage, position=9), fmt=3)
    assert snapcodec.decode(old.state, old.checksum, 9).usage.totals["k1"] == Totals(2, 0, 0, 80_000_400)


def test_an_older_layout_loads_only_from_before_units_existed() -> None:
    assert db.SCHEMA_HEAD >= snapcodec.UNITS_SCHEMA == "0017"
    for fmt in (2, 3):
        assert snapcodec.is_compatible("0016", fmt)  # no delta could carry units then
        assert not snapcodec.is_compatible(snapcodec.UNITS_SCHEMA, fmt)  # its totals may lack some
    assert snapcodec.is_compatible(snapcodec.TOOLS_SCHEMA, 5) and snapcodec.is_compatible(db.SCHEMA_HEAD, 5)
    assert snapcodec.formats_at_head() == {5}  # what compaction lets pin its cutoff


def test_totals_carry_hosted_tool_uses_and_a_format_4_snapshot_loads_only_from_before_them() -> None:
    searched = UsageDelta("k1", None, "dep", "gpt-4o", 500_000, 1, 10, 5, 42_500_100, web_searches=1,
                          file_searches=1, containers=1, tools_nusd=42_500_000)
    usage = UsageState()
    apply_usage(usage, UsageRecorded("n1", 1, 1, (searched, CHAT)))
    assert usage.totals["k1"] == Totals(2, 20, 10, 42_500_200, web_searches=1, file_searches=1, containers=1,
                                        tools_nusd=42_500_000)
    snap = snapcodec.encode(Projection(usage=usage, position=9))
    assert snapcodec.decode(snap.state, snap.checksum, 9).usage.totals == usage.totals
    old = snapcodec.encode(Projection(usage=usage, position=9), fmt=4)
    assert snapcodec.decode(old.state, old.checksum, 9).usage.totals["k1"] == Totals(2, 20, 10, 42_500_200)
    assert db.SCHEMA_HEAD >= snapcodec.TOOLS_SCHEMA == "0024"
    # labelled before them: its writer's code had none, though the database may have been migrated
    # beneath it (a rolling upgrade); the loader then checks the log (test_snapshot_older_layout.py)
    assert snapcodec.is_compatible("0023", 4)
    assert snapcodec.left_out(4) == ("web_searches", "file_searches", "containers", "tools_nusd")
    assert snapcodec.left_out(3)[:3] == ("images", "audio_seconds", "characters") and snapcodec.left_out(5) == ()
    assert not snapcodec.is_compatible(snapcodec.TOOLS_SCHEMA, 4)  # its totals may lack some
