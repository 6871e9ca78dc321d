"""`shieldes usage`, `audit log`, `audit verify` and examples/audit.sql against a populated database."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shieldes.events.catalog import UsageDelta, UsageRecorded, UsageRolledUp, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.snapshots.rollups import fold_deltas
from tests import pg
from tests.cli import count_events, invoke, ok, populate, refused, sql

AUDIT_SQL = Path(__file__).resolve().parents[2] / "examples" / "audit.sql"
def this_hour() -> int:
    """The hour a test's usage lands in, taken when its data is written (not at import: a run
    crossing midnight UTC would put "today's" usage on yesterday)."""
    return int(time.time() // 3600)


def deltas(keys: dict[str, str], team_id: str, hour: int) -> list[UsageRecorded]:
    """Three flushes over two days: app uses two models, old only one."""
    app, old = keys["app"], keys["old"]
    return [
        UsageRecorded(
            "n1",
            1,
            1,
            (
                UsageDelta(app, team_id, "openai", "gpt-4o", hour, 3, 300, 30, 1_050_000_000, web_searches=3,
                           tools_nusd=30_000_000),  # three web searches: $0.03 of its cost
                UsageDelta(old, None, "openai", "gpt-4o-mini", hour - 24, 1, 10, 5, 7),
            ),
        ),
        UsageRecorded(
            "n1", 1, 2, (UsageDelta(app, team_id, "openai", "gpt-4o", hour, 2, 200, 20, 700_000_000, images=2),)
        ),
        UsageRecorded(
            "n2", 1, 1, (UsageDelta(app, team_id, "openai", "gpt-4o-mini", hour - 24, 5, 50, 50, 123, audio_seconds=6,
                                    characters=28),)
        ),
    ]


async def _append(url: str, events: list[tuple[str, Any]]) -> None:
    pool = open_pool(url, size=1)
    await pool.open(wait=True)
    try:
        store, codec = PostgresEventStore(pool), Codec()
        for stream, e in events:
            await store.append(stream, [NewEvent.of(e, codec)], AppendOptions())
    finally:
        await pool.close()


def append_usage(url: str, events: list[Any]) -> None:
    asyncio.run(_append(url, [(usage_stream(getattr(e, "node_id", "leader")), e) for e in events]))


def fake_compaction(url: str) -> None:
    """What compaction does to the log: raw flushes replaced by one rollup with the same totals."""
    rows = sql(url, "SELECT position, data FROM events WHERE type = 'usage.recorded' ORDER BY position")
    codec = Codec()
    deltas = [d for _, data in rows for d in codec.decode("usage.recorded", 1, data).deltas]  # type: ignore[attr-defined]
    rollup = UsageRolledUp(len(rows), rows[0][0], rows[-1][0], fold_deltas(deltas))
    sql(url, "DELETE FROM events WHERE type = 'usage.recorded'")
    asyncio.run(_append(url, [("usage-rollup", rollup)]))


@pytest.fixture
def with_usage(database_url: str) -> tuple[str, dict[str, Any]]:
    made = populate(database_url)
    keys = {"app": made["app"]["id"], "old": made["old"]["id"]}
    made["hour"] = this_hour()
    append_usage(database_url, deltas(keys, made["team"]["id"], made["hour"]))  # type: ignore[arg-type]
    return database_url, made


def test_usage_per_key_and_after_compaction(with_usage: tuple[str, dict[str, Any]]) -> None:
    url, made = with_usage
    hour = made["hour"]
    rows = {r["key"]: r for r in ok(url, "usage")}
    assert (rows["app"]["requests"], rows["app"]["prompt_tokens"], rows["app"]["completion_tokens"]) == (
        10,
        550,
        100,
    )
    assert rows["app"]["cost_usd"] == pytest.approx(1.750000123) and rows["app"]["cost_nusd"] == 1_750_000_123
    # what media calls were billed in besides tokens, each in its own column
    assert (rows["app"]["images"], rows["app"]["audio_seconds"], rows["app"]["characters"]) == (2, 6, 28)
    assert (rows["old"]["images"], rows["old"]["audio_seconds"], rows["old"]["characters"]) == (0, 0, 0)
    assert (rows["old"]["requests"], rows["old"]["cost_nusd"]) == (1, 7)  # revoked but it has usage
    today = time.strftime("%Y-%m-%d", time.gmtime(hour * 3600))
    only_today = {r["key"]: r for r in ok(url, "usage", "--since", today)}
    assert only_today["app"]["requests"] == 5 and "old" not in only_today
    assert (only_today["app"]["images"], only_today["app"]["characters"]) == (2, 0)
    yesterday = time.strftime("%Y-%m-%d", time.gmtime((hour - 24) * 3600))
    assert [r["requests"] for r in ok(url, "usage", "--key", "old", "--until", yesterday)] == [1]
    # a time ago stands for the UTC day it falls on, as logs and audit log take it
    assert ok(url, "usage", "--since", "1s") == ok(url, "usage", "--since", today)
    assert ok(url, "usage", "--since", "1d") == ok(url, "usage")
    assert ok(url, "usage", "--until", "1d") == ok(url, "usage", "--until", yesterday)
    before = ok(url, "usage")
    fake_compaction(url)
    assert sql(url, "SELECT count(*) FROM events WHERE type LIKE 'usage.%'") == [(1,)]
    assert ok(url, "usage") == before
    table = invoke(url, "usage")
    assert table.stdout.splitlines()[0].split() == [
        "KEY",
        "KEY_ID",
        "REQUESTS",
        "PROMPT_TOKENS",
        "COMPLETION_TOKENS",
        "IMAGES",
        "AUDIO_SECONDS",
        "CHARACTERS",
        "WEB_SEARCHES",
        "FILE_SEARCHES",
        "CONTAINERS",
        "TOOLS_USD",
        "COST_USD",
    ]


def test_budget_show_counts_spend_from_sql(with_usage: tuple[str, dict[str, Any]]) -> None:
    url, _ = with_usage
    shown = ok(url, "budget", "show", "app")  # 5 USD per 30d; 1.750000123 spent
    assert shown["spent_nusd"] == 1_750_000_123 and shown["remaining_usd"] == pytest.approx(5 - 1.750000123)
    ok(url, "budget", "set", "app", "--amount", "1", "--period", "1d")
    shown = ok(url, "budget", "show", "app")  # only today's spend counts now
    assert shown["spent_nusd"] == 1_750_000_000 and shown["remaining_usd"] == 0
    team = ok(url, "budget", "show", "--team", "eng")
    assert team["spent_nusd"] == 1_750_000_123


def test_audit_log_filters(with_usage: tuple[str, dict[str, Any]]) -> None:
    url, made = with_usage
    ok(url, "key", "revoke", "app", env={"SHIELDES_ACTOR": "alice"})
    everything = ok(url, "audit", "log")
    assert [e["position"] for e in everything] == sorted(e["position"] for e in everything)
    assert all(e["type"] != "usage.recorded" for e in everything)
    revoked = ok(url, "audit", "log", "--type", "virtual_key.revoked")
    assert [(e["subject"], e["actor"]) for e in revoked] == [("old", "tester"), ("app", "alice")]
    assert [e["actor"] for e in ok(url, "audit", "log", "--actor", "alice")] == ["alice"]
    key_events = ok(url, "audit", "log", "--type", "virtual_key")
    assert {e["type"] for e in key_events} == {"virtual_key.created", "virtual_key.revoked"}
    by_subject = ok(url, "audit", "log", "--subject", "app")
    assert {e["type"] for e in by_subject} >= {"virtual_key.created", "budget.set", "rate_limit.set"}
    assert ok(url, "audit", "log", "--subject", made["app"]["id"]) == by_subject
    assert all("key_hash" not in e["data"] for e in everything)
    last_two = ok(url, "audit", "log", "--limit", "2")
    assert last_two == everything[-2:]
    assert ok(url, "audit", "log", "--since", "2999-01-01") == []
    assert len(ok(url, "audit", "log", "--until", time.strftime("%Y-%m-%d"))) == len(everything)


def test_audit_verify_passes_then_names_the_edited_position(with_usage: tuple[str, dict[str, Any]]) -> None:
    url, _ = with_usage
    result = invoke(url, "audit", "verify")
    assert result.exit_code == 0 and result.stdout.startswith("ok: 9 config events verified"), result.stdout
    assert result.stdout.rstrip().endswith("; 0 snapshots match the log"), result.stdout
    report = ok(url, "audit", "verify")
    assert report["ok"] and report["config_events"] == 9
    sql(url, "UPDATE events SET data = jsonb_set(data, '{weight}', '5') WHERE position = 1")  # a config row
    line = refused(url, "audit", "verify")
    assert "hash chain broken at position 1:" in line and "edited" in line
    bad = invoke(url, "--json", "audit", "verify")
    assert bad.exit_code == 1 and '"bad_position": 1' in bad.stdout


def test_audit_verify_detects_deleted_rows(with_usage: tuple[str, dict[str, Any]]) -> None:
    url, _ = with_usage
    config = [p for (p,) in sql(url, "SELECT position FROM events WHERE stream = 'config' ORDER BY position")]
    sql(url, "DELETE FROM events WHERE position = %s", (config[3],))
    assert f"position {config[4]}:" in refused(url, "audit", "verify")
    sql(url, "DELETE FROM events WHERE stream = 'config' AND position > %s", (config[2],))
    assert f"position {config[-1]}:" in refused(url, "audit", "verify")  # the tip in log_head is gone


def test_audit_verify_detects_rows_inserted_past_the_tip(with_usage: tuple[str, dict[str, Any]]) -> None:
    url, _ = with_usage
    sql(
        url,
        "INSERT INTO events (position, stream, type, version, data, prev_hash, hash) "
        "SELECT max(position) + 100, 'config', 'virtual_key.revoked', 1, '{\"id\": \"x\"}', 'a', 'b' "
        "FROM events",
    )
    (top,) = sql(url, "SELECT max(position) FROM events")[0]
    assert f"position {top}: a config event lies beyond log_head" in refused(url, "audit", "verify")


def test_audit_verify_ignores_usage_rows_and_empty_log(database_url: str) -> None:
    assert ok(database_url, "audit", "verify")["config_events"] == 0
    append_usage(database_url, [UsageRecorded("n", 1, 1, ())])
    assert ok(database_url, "audit", "verify")["ok"]


def audit_queries() -> list[tuple[str, str]]:
    text = AUDIT_SQL.read_text()
    found = re.findall(r"^-- name: (\w+)\n(.*?;)\s*$", text, flags=re.M | re.S)
    assert len(found) >= 5
    return found


def test_every_example_query_runs_as_the_audit_role(with_usage: tuple[str, dict[str, Any]]) -> None:
    url, made = with_usage
    results: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE shieldes_audit")
        for name, query in audit_queries():
            results[name] = conn.execute(query).fetchall()  # type: ignore[arg-type]
            assert results[name], f"{name} returned no rows"
    assert [(r[1], r[2]) for r in results["who_revoked_what"]] == [("tester", "old")]
    assert results["top_spenders_this_month"][0][0] == "app"
    key_rows = {r[0]: r for r in results["key_inventory"]}
    assert key_rows["old"][5] is True and key_rows["app"][5] is False
    per_model = {r[1]: r for r in results["cost_per_model"]}
    assert per_model["gpt-4o"][2] == 5 and float(per_model["gpt-4o"][5]) == pytest.approx(1.75)
    days = {(str(r[0]), r[1]): r[2] for r in results["usage_per_key_per_day"]}
    assert sum(days.values()) == 11
    assert any(r[0] == made["team"]["id"] for r in results["team_spend_this_month"])
    [tools] = results["hosted_tools_per_key_this_month"]
    assert (tools[0], tools[1], float(tools[4]), float(tools[5])) == ("app", 3, 0.03, pytest.approx(1.72))


def test_audit_role_cannot_read_raw_tables_or_write(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE shieldes_audit")
        for table in ("events", "log_head", "snapshots", "cluster_nodes"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO events (position, stream, type, version, data) VALUES (1, 'c', 'x', 1, '{}')"
            )
        conn.execute("SELECT * FROM audit_log").fetchall()
    assert count_events(database_url) == 0


def test_audit_verify_holds_for_extreme_valid_values(database_url: str) -> None:
    """Numbers at the accepted limits survive jsonb unchanged, so their hashes still verify
    (above 1e16 jsonb would hand back an integer for a float and break the chain: refused)."""
    url = database_url
    ok(url, "pricing", "set", "m", "--input", "1e12", "--output", "5e-324")
    ok(url, "pricing", "set", "n", "--input", "0.1", "--output", "123456789.123456789")
    ok(
        url,
        "provider",
        "add",
        "p",
        "--type",
        "openai",
        "--base-url",
        "https://x.io",
        "--models",
        "m",
        "--weight",
        "1e6",
    )
    ok(url, "key", "create", "--name", "k", "--budget", "999999999999.99", "--expires-at", "9999-12-30")
    ok(url, "team", "create", "t", "--budget", "0")
    assert ok(url, "audit", "verify")["config_events"] == 7
    assert "between 0 and" in refused(url, "pricing", "set", "m", "--input", "1e16", "--output", "1")


async def test_chain_hash_is_over_the_stored_form(database_url: str) -> None:
    """The hash is computed over the values as jsonb hands them back: a negative zero or a float
    past 1e16 written by any client (not only the CLI's validated commands) still verifies."""
    from shieldes.events.catalog import CONFIG_STREAM
    from shieldes.events.pg_store import PostgresEventStore, open_pool
    from shieldes.events.store import AppendOptions, NewEvent

    pool = open_pool(database_url, size=1, name="t")
    await pool.open(wait=True)
    try:
        store = PostgresEventStore(pool)
        odd = {"model": "m", "input_per_1m": -0.0, "output_per_1m": 1e300, "nested": [{"x": -0.0}, 2.5e17]}
        await store.append(CONFIG_STREAM, [NewEvent("pricing.set", 3, odd)], AppendOptions(metadata={"n": -0.0}))
    finally:
        await pool.close()
    report = await asyncio.to_thread(ok, database_url, "audit", "verify")
    assert report["ok"] and report["config_events"] == 1


def test_audit_log_by_subject_among_many_keys(database_url: str) -> None:
    """`--subject` names a key among 20,000: the view's key names are joined in by hash, not a
    nested loop over every key for each config event (which did not answer within the read
    bound, lowered to 5 s here, and took minutes at 100,000 keys)."""
    from shieldes.events.catalog import CONFIG_STREAM, VirtualKeyCreated
    from shieldes.secrets import hash_key

    async def seed() -> None:
        pool = open_pool(database_url, size=1)
        await pool.open(wait=True)
        try:
            store, codec = PostgresEventStore(pool), Codec()
            for start in range(0, 20_000, 5000):
                await store.append(CONFIG_STREAM, [
                    NewEvent.of(VirtualKeyCreated(f"key_{i:08x}", f"app-{i}", hash_key(f"sk-{i}"), "sk-shd-seed",
                                                  None), codec) for i in range(start, start + 5000)],
                    AppendOptions(metadata={"actor": "seed"}))
        finally:
            await pool.close()

    asyncio.run(seed())
    sql(database_url, "ANALYZE events")  # as autovacuum does after such an insert: the planner's view of it
    env = {"SHIELDES_DB_ADMIN_READ_TIMEOUT": "5"}
    rows = ok(database_url, "audit", "log", "--subject", "app-4242", env=env)
    assert [(r["type"], r["subject"], r["data"]["id"]) for r in rows] == [("virtual_key.created", "app-4242",
                                                                          "key_00001092")]
    assert ok(database_url, "audit", "log", "--subject", "key_00001092", env=env) == rows  # an id finds it too
    assert ok(database_url, "audit", "log", "--subject", "nothing-like-it", env=env) == []


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows every node of an EXPLAIN ANALYZE plan produced, over all its loops."""
    own = int(plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1))
    return own + sum(_rows_read(p) for p in plan.get("Plans", []))


def _many_keys(database_url: str) -> None:
    """20,000 keys with a budget each, and a team with a budget."""
    from shieldes.events.catalog import CONFIG_STREAM, BudgetSet, TeamCreated, VirtualKeyCreated
    from shieldes.secrets import hash_key

    async def seed() -> None:
        pool = open_pool(database_url, size=1)
        await pool.open(wait=True)
        try:
            store, codec = PostgresEventStore(pool), Codec()
            await store.append(CONFIG_STREAM, [NewEvent.of(TeamCreated("team_eng", "eng"), codec)],
                               AppendOptions(metadata={"actor": "seed"}))
            for start in range(0, 20_000, 5000):
                await store.append(CONFIG_STREAM, [
                    NewEvent.of(e, codec) for i in range(start, start + 5000) for e in (
                        VirtualKeyCreated(f"key_{i:08x}", f"app-{i}", hash_key(f"sk-{i}"), "sk-shd-seed", None),
                        BudgetSet("key", f"key_{i:08x}", 5.0, "1d"))],
                    AppendOptions(metadata={"actor": "seed"}))
            await store.append(CONFIG_STREAM, [NewEvent.of(BudgetSet("team", "team_eng", 50.0, "30d"), codec)],
                               AppendOptions(metadata={"actor": "seed"}))
        finally:
            await pool.close()

    asyncio.run(seed())
    sql(database_url, "ANALYZE events")
    sql(database_url, "ANALYZE config_index")


@pytest.fixture(scope="module")
def many_keys(pg_server: str) -> Iterator[str]:
    """A database holding _many_keys' seed, made once for the module: the tests get copies of it."""
    with pg.seeded(pg_server, _many_keys) as url:
        yield url


@pytest.fixture
def many_keys_url(pg_server: str, many_keys: str) -> Iterator[str]:
    with pg.copied(pg_server, many_keys) as url:
        yield url


def test_a_page_of_the_audit_log_reads_its_own_rows_among_many_keys(many_keys_url: str) -> None:
    """A page without a subject names each row's key or team by one lookup in config_index: the
    view joined every config event of the page to every key (a nested loop under the LIMIT), a
    million rows read per row at a million keys, past the 30 s read bound."""
    from shieldes.events.queries import AUDIT_SQL, audit_params

    params = audit_params(limit=100)
    with psycopg.connect(many_keys_url) as conn:
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + AUDIT_SQL, params).fetchone()[0][0]["Plan"]
    assert _rows_read(plan) < 100 * 20, _rows_read(plan)  # a few per row of the page (20,000 keys per row before)
    rows = ok(many_keys_url, "audit", "log", "--limit", "3")
    assert sorted((r["type"], r["subject"]) for r in rows) == [("budget.set", "app-19999"), ("budget.set", "eng"),
                                                               ("virtual_key.created", "app-19999")]


def test_the_audit_of_one_subject_reads_its_events_among_many_keys(many_keys_url: str) -> None:
    """`--subject` starts from the events of the keys and teams with that id or name (and the
    shared config) in `audit_subjects`: it matched every config event's looked-up name, one
    lookup per event (9.5 s at a million keys). The same rows, also for the audit role."""
    from shieldes.events.queries import audit_params, audit_sql

    sql(many_keys_url, "ANALYZE config_index")
    for subject, expected in (
        ("app-77", [("budget.set", "app-77"), ("virtual_key.created", "app-77")]),
        ("key_0000004d", [("budget.set", "app-77"), ("virtual_key.created", "app-77")]),
        ("eng", [("budget.set", "eng"), ("team.created", "eng")]),
        ("team_eng", [("budget.set", "eng"), ("team.created", "eng")]),
        ("nobody", []),
    ):
        params = audit_params(subject=subject, limit=100)
        with psycopg.connect(many_keys_url, autocommit=True) as conn:
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + audit_sql(params), params).fetchone()[0][0]["Plan"]
            conn.execute("SET ROLE shieldes_audit")
            as_auditor = conn.execute(audit_sql(params), params).fetchall()
        assert _rows_read(plan) < 200, (subject, _rows_read(plan))  # 40,000 lookups before
        rows = ok(many_keys_url, "audit", "log", "--subject", subject)
        assert sorted((r["type"], r["subject"]) for r in rows) == expected
        assert sorted((r[3], r[4]) for r in as_auditor) == expected
