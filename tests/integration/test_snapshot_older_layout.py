"""A snapshot in an older layout, written by a node of the previous release after this release's
migration (a rolling upgrade: the old leader keeps snapshotting, labelled with its own schema head).

Found by bench/rolling_upgrade.py from db1531e (schema 0020): the old leader's format-4 snapshots,
labelled 0020, were loaded by upgraded nodes although the new nodes' deltas before them held web
searches, which that layout leaves out: each restarted node showed fewer web searches than the log."""

from __future__ import annotations

import dataclasses
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.events.catalog import UsageDelta, UsageRecorded, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.snapshots import codec
from shieldes.snapshots.loader import load_projection_report
from shieldes.snapshots.store import save_encoded
from tests.integration.usage_log import HOUR0, full_replay, seed_config

SEARCHED = UsageDelta("k1", None, "openai", "gpt-4o", HOUR0, 1, 10, 5, 10_000_100, web_searches=1,
                      tools_nusd=10_000_000)
CHAT = UsageDelta("k1", None, "openai", "gpt-4o", HOUR0, 1, 10, 5, 100)


async def _flush(store: PostgresEventStore, seq: int, *deltas: UsageDelta) -> None:
    await store.append(usage_stream("n1"), [NewEvent.of(UsageRecorded("n1", 1, seq, deltas), Codec())],
                       AppendOptions(metadata={"node_id": "n1"}, idempotency_seq=seq))


async def _old_release_snapshot(pool: AsyncConnectionPool[Any], store: PostgresEventStore) -> int:
    """A format-4 snapshot of the log as it stands, labelled with a head before TOOLS_SCHEMA, as a
    node of release 0020 or 0023 writes it."""
    snap = codec.encode(await full_replay(store), fmt=4)
    old = dataclasses.replace(snap, schema_version="0023")
    assert codec.is_compatible(old.schema_version, old.format)  # the label alone lets it through
    return (await save_encoded(pool, old, node_id="old-leader", keep=5)).id


async def test_an_older_layout_written_after_usage_held_its_missing_fields_is_skipped(
        pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    await _flush(pg_store, 1, CHAT)
    await _flush(pg_store, 2, SEARCHED)  # a new node's delta: web searches in it
    old = await _old_release_snapshot(pool, pg_store)
    await _flush(pg_store, 3, CHAT)

    loaded, report = await load_projection_report(pool)
    replayed = await full_replay(pg_store)
    assert report.snapshot_id != old
    assert any(f"snapshot {old}: format 4 leaves out web_searches" in s for s in report.skipped), report.skipped
    assert loaded.usage.totals == replayed.usage.totals
    assert loaded.usage.totals["k1"].web_searches == 1 and loaded.usage.totals["k1"].tools_nusd == 10_000_000


async def test_an_older_layout_is_still_loaded_where_usage_holds_none_of_its_missing_fields(
        pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    await _flush(pg_store, 1, CHAT)
    old = await _old_release_snapshot(pool, pg_store)  # the common case: an upgrade starts from it
    await _flush(pg_store, 2, SEARCHED)  # after it: folded from the tail

    loaded, report = await load_projection_report(pool)
    assert report.snapshot_id == old and not report.skipped
    assert loaded.usage.totals == (await full_replay(pg_store)).usage.totals
    assert loaded.usage.totals["k1"].web_searches == 1
