"""Every CLI table prints a time one way, UTC to the second (`2026-12-03 17:38:11Z`), and `--json`
keeps ISO 8601: request log, audit log, key list and show, budget show, snapshot list, cluster
status, config show and diff (docs/cli.md, "Times"). A time a table printed, given back
as --since or --until, selects the row it was printed for."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

from shieldes.cluster.membership import Membership
from shieldes.events.pg_store import open_pool
from shieldes.requestlog.record import RequestRecord
from shieldes.requestlog.writer import RequestLogWriter
from tests.cli import invoke, ok

# anything that looks like a date with a time after it, however it is written
LOOKS_LIKE_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d[^\s,;)\"]*")
TABLE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")


def table(database_url: str, *args: str) -> str:
    result = invoke(database_url, *args)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result.stdout


def assert_table_times(text: str, expected: int = 1) -> list[str]:
    """The times in a table's text, every one in the table format, at least `expected` of them."""
    shown = LOOKS_LIKE_TIME.findall(text)
    assert len(shown) >= expected, text
    assert all(TABLE_TIME.fullmatch(t) for t in shown), (shown, text)
    return shown


def assert_iso(value: Any) -> None:
    assert isinstance(value, str) and "T" in value, value
    assert datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None, value


async def _log_and_node(database_url: str) -> None:
    """Two requests in the log, half a second apart within one second, and a node's membership row
    (left behind as a crashed node's: cluster status lists it, started time and all)."""
    pool = open_pool(database_url, size=2)
    await pool.open(wait=True)
    try:
        started = datetime(2026, 11, 30, 12, 34, 56, 250000, tzinfo=UTC).timestamp()
        writer = RequestLogWriter(pool, "n1", capacity=10, interval=3600)
        for i, offset in enumerate((0.0, 0.5)):
            rec = RequestRecord(f"req{i}", started + offset, 1.0, "POST", "/v1/chat/completions")
            rec.route, rec.t_end, rec.status, rec.cost_nusd = "/v1/chat/completions", 1.01, 200, 3150
            writer.add(rec)
        assert await writer.flush_all(10)
        node = Membership(pool, "n1", "127.0.0.1:8081", "127.0.0.1:7001", "0.1.0")
        await node.start()
        await node.stop(deregister=False)
    finally:
        await pool.close()


def test_every_table_prints_times_one_way_and_json_keeps_iso(database_url: str) -> None:
    ok(database_url, "provider", "add", "openai", "--type", "openai", "--base-url", "https://api.openai.com/v1",
       "--api-key-env", "OPENAI_API_KEY", "--models", "gpt-4o")
    ok(database_url, "key", "create", "--name", "app", "--budget", "5", "--budget-period", "1mo",
       "--expires-at", "2031-02-03T04:05:06.250Z")
    ok(database_url, "key", "update", "app", "--expires-at", "2032-02-03T04:05:06Z")
    ok(database_url, "team", "create", "tiny", "--budget", "0.000002")
    ok(database_url, "snapshot", "create")
    asyncio.run(_log_and_node(database_url))
    cluster = table(database_url, "cluster", "status")
    cluster_json = ok(database_url, "cluster", "status")

    logs = table(database_url, "logs", "--route", "/v1/*")
    assert assert_table_times(logs, 2) == ["2026-11-30 12:34:56Z"] * 2
    detail = table(database_url, "logs", "--request-id", "req0")
    assert "2026-11-30 12:34:56Z" in detail and "+00:00" not in detail
    assert "0.00000315" in detail and "e-06" not in detail  # the cost as every table prints money
    assert_table_times(detail, 2)  # started, finished, logged
    audit = table(database_url, "audit", "log")
    assert_table_times(audit, 4)
    # the event's data on one line: its expiry as the tables print times, its amount as a decimal
    assert '"expires_at":"2031-02-03 04:05:06Z"' in audit and '"amount_usd":0.000002' in audit, audit
    keys = table(database_url, "key", "list")
    assert assert_table_times(keys) == ["2032-02-03 04:05:06Z"]
    assert "2032-02-03 04:05:06Z" in table(database_url, "key", "show", "app")
    budget = table(database_url, "budget", "show", "app")
    assert len(assert_table_times(budget, 2)) == 2 and "-01 00:00:00Z" in budget
    assert_table_times(table(database_url, "snapshot", "list"))
    assert_table_times(cluster)
    assert_table_times(table(database_url, "config", "show"))
    diff = table(database_url, "config", "diff", "3", "4")
    assert "2031-02-03 04:05:06Z -> 2032-02-03 04:05:06Z" in diff, diff
    assert_table_times(diff, 3)

    # --json: ISO 8601, with the precision the log has
    rows = ok(database_url, "logs", "--route", "/v1/*")
    assert [r["started_at"] for r in rows] == ["2026-11-30T12:34:56.250000+00:00", "2026-11-30T12:34:56.750000+00:00"]
    audited = ok(database_url, "audit", "log")
    for r in audited:
        assert_iso(r["recorded_at"])
    created = next(r for r in audited if r["type"] == "virtual_key.created")
    assert created["data"]["expires_at"] == 1927857906.25  # the data as stored
    assert ok(database_url, "key", "show", "app")["expires_at"] == "2032-02-03T04:05:06Z"
    shown = ok(database_url, "budget", "show", "app")
    assert_iso(shown["period_start"])
    assert_iso(shown["resets_at"])
    assert_iso(ok(database_url, "snapshot", "list")[0]["created_at"])
    assert_iso(cluster_json["nodes"][0]["started_at"])

    # the printed time selects its rows again: --since from it, and --until (to the second) up to
    # the end of that second, so both requests of 12:34:56 are in
    assert [r["request_id"] for r in ok(database_url, "logs", "--since", "2026-11-30 12:34:56Z",
                                        "--until", "2026-11-30 12:34:56Z")] == ["req0", "req1"]
    assert ok(database_url, "logs", "--until", "2026-11-30 12:34:55Z", "--route", "/v1/*") == []

