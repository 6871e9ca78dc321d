"""The request log on a real node: every kind of request (JSON, stream, refused 401/403/404/429,
unknown path, upstream 500 with failover, client gone mid-stream) gets exactly one row with the
right fields, readable by the audit role through SQL and through `shieldes logs --json`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import openai
import psycopg
import pytest

from shieldes.events.pg_store import open_pool
from shieldes.projections.shared_commands import AddProvider
from shieldes.requestlog import store
from shieldes.requestlog.partitions import TABLES, partition_name
from shieldes.requestlog.record import RequestRecord
from shieldes.requestlog.writer import RequestLogWriter, upkeep
from tests import pg
from tests.cli import invoke, ok, refused
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Harness, harness, wait_until

MSGS = [{"role": "user", "content": "hello there"}]
N = 2  # requests of each kind


def oai(base: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


async def _leave_mid_stream(base: str, secret: str) -> str:
    body = {"model": "gpt-4o", "messages": MSGS, "stream": True}
    async with (
        aiohttp.ClientSession() as s,
        s.post(base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}) as r,
    ):
        assert r.status == 200
        async for line in r.content:
            if line.startswith(b"data: "):
                break
        return r.headers["x-request-id"]  # leaving the block closes the connection mid-stream


ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "request_log.sql"


def audit_rows(database_url: str) -> list[dict[str, Any]]:
    """request_log as the shieldes_audit role sees it."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SET ROLE shieldes_audit")
        cur.execute("SELECT * FROM request_log ORDER BY started_at")
        rows = cur.fetchall()
        for table in ("request_log_rows", "request_log_bodies"):  # the raw tables stay closed to auditors
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                cur.execute(f"SELECT 1 FROM {table}")
        queries = re.findall(r"^-- name: (\w+)\n(.*?;)\s*$", EXAMPLES.read_text(), flags=re.M | re.S)
        assert len(queries) >= 5
        for name, query in queries:  # every documented example runs as the audit role, with results
            cur.execute(query)
            assert cur.fetchall(), name
        return rows


async def flushed(h: Harness, expected: int) -> None:
    writer = h.node.request_log
    assert writer is not None
    await wait_until(lambda: writer.buffer.added >= expected, timeout=10)
    assert await writer.flush_all(10)


async def test_every_kind_of_request_gets_exactly_one_row(database_url: str) -> None:
    up = FakeUpstream(completion_tokens=8, api_key=UPSTREAM_KEY, models=("gpt-4o", "gpt-4o-mini"))
    async with harness(database_url, upstream=up, disconnect_drain_seconds=5.0, upstream_retries=1) as h:
        await h.admin(AddProvider("backup", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-4o",)))
        good = await h.create_key("good")
        narrow = await h.create_key("narrow", models=("gpt-4o-mini",))
        limited = await h.create_key("limited", rpm=1)
        await h.sync()
        client = oai(h.base, good)
        want: Counter[str] = Counter()

        for _ in range(N):  # (tagged: examples/request_log.sql sums cost per tag)
            await client.chat.completions.create(model="gpt-4o", messages=MSGS, extra_body={"tags": ["search"]})  # type: ignore[arg-type]
            want["json"] += 1
            stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)  # type: ignore[arg-type]
            assert len([c async for c in stream]) > 1
            want["stream"] += 1
            with pytest.raises(openai.AuthenticationError):
                await oai(h.base, "sk-shd-not-a-key").chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            want["401"] += 1
            with pytest.raises(openai.PermissionDeniedError):
                await oai(h.base, narrow).chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            want["403"] += 1
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="no-such-model", messages=MSGS)  # type: ignore[arg-type]
            want["404"] += 1
            async with aiohttp.ClientSession() as s, s.post(h.base + "/v1/nowhere", json={}) as r:
                assert r.status == 404
            want["unmatched"] += 1
            up.inject("/v1/chat/completions", status=500, times=1)  # first attempt fails, the next serves
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            want["failover"] += 1
        # every deployment of gpt-4o fails: the fallback the request names answers (examples/request_log.sql)
        up.inject("/v1/chat/completions", status=500, times=2)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS,  # type: ignore[arg-type]
                                             extra_body={"fallbacks": ["gpt-4o-mini"]})
        want["fallback"] += 1
        limited_client = oai(h.base, limited)
        await limited_client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        want["json"] += 1
        for _ in range(N):
            with pytest.raises(openai.RateLimitError):
                await limited_client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            want["429"] += 1
        up.inject("/v1/chat/completions", chunk_delay=0.02, times=N)
        left = [await _leave_mid_stream(h.base, good) for _ in range(N)]
        want["disconnect"] += N

        total = sum(want.values())
        await flushed(h, total)
        rows = audit_rows(h.database_url)
        assert len(rows) == total  # exactly one row per request, none for anything else
        assert {r["node_id"] for r in rows} == {h.node.node_id}
        assert len({r["request_id"] for r in rows}) == total

        def kind(r: dict[str, Any]) -> str:
            if r["route"] == "unmatched":
                return "unmatched"
            if r["error_code"] == "client_disconnected":
                return "disconnect"
            if r["status"] != 200:
                return str(r["status"])
            if r["fallback"]:
                return "fallback"
            if r["attempts"] == 2:
                return "failover"
            return "stream" if r["stream"] else "json"

        assert Counter(kind(r) for r in rows) == want
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_kind.setdefault(kind(r), []).append(r)
        for r in by_kind["json"] + by_kind["stream"] + by_kind["failover"]:
            assert r["route"] == "/v1/chat/completions" and r["model"] == "gpt-4o"
            assert r["upstream_model"] == "gpt-4o" and r["key_name"] in ("good", "limited")
            assert (r["prompt_tokens"], r["completion_tokens"]) == (2, 8)
            assert r["cost_usd"] > 0 and r["cost_nusd"] == 2 * 2500 + 8 * 10000
            assert r["latency_ms"] > 0 and r["ttfb_ms"] is not None and r["ttfb_ms"] <= r["latency_ms"]
            assert r["error_code"] is None and r["deployment"] in ("openai", "backup")
        for r in by_kind["stream"]:
            assert r["ttft_ms"] is not None and 0 < r["ttft_ms"] <= r["latency_ms"]
        for r in by_kind["failover"]:
            assert r["failover_path"][-1] == r["deployment"] and len(r["failover_path"]) == 2
        [fell] = by_kind["fallback"]
        assert (fell["model"], fell["upstream_model"], fell["fallback"]) == ("gpt-4o", "gpt-4o-mini", "gpt-4o-mini")
        assert len(fell["failover_path"]) == 3 and fell["cost_nusd"] > 0 and fell["error_code"] is None
        for code, error, key in (("401", "invalid_api_key", None), ("403", "model_not_allowed", "narrow"),
                                 ("404", "model_not_found", "good"), ("429", "rate_limit_exceeded", "limited")):
            for r in by_kind[code]:
                assert (r["error_code"], r["key_name"], r["attempts"], r["cost_usd"]) == (error, key, 0, None)
                assert (r["upstream_model"], r["deployment"]) == (None, None)  # no upstream was sent anything
        # why, in the words the client got: which key, model or limit, and what to do
        for code, why in (("401", "invalid or revoked API key"), ("403", "key 'narrow' may not use model 'gpt-4o'"),
                          ("404", "'no-such-model'"), ("429", "rate limit reached for key 'limited': all 1 requests")):
            for r in by_kind[code]:
                assert why in r["error_message"], (code, r["error_message"])
        for r in by_kind["json"] + by_kind["stream"] + by_kind["failover"]:
            assert r["error_message"] is None
        for r in by_kind["unmatched"]:
            assert (r["status"], r["path"], r["error_code"]) == (404, "/v1/nowhere", "not_found")
            assert r["error_message"]
        for r in by_kind["disconnect"]:
            assert r["request_id"] in left and r["stream"] and r["status"] == 200
            assert "went away mid-stream" in r["error_message"]
            assert r["completion_tokens"] == 8  # the relay drained the upstream for its usage
        assert all(r["user_agent"] and r["client_ip"] == "127.0.0.1" for r in rows)

        # the CLI reads the same rows; filters narrow them
        result = await asyncio.to_thread(invoke, h.database_url, "logs", "--json", "--limit", "1000")
        assert result.exit_code == 0, result.stderr
        listed = json.loads(result.stdout)
        assert sorted(r["request_id"] for r in listed) == sorted(r["request_id"] for r in rows)
        assert set(listed[0]) >= {"request_id", "started_at", "node_id", "key_id", "key_name", "route", "model",
                                  "deployment", "status", "error_code", "latency_ms", "prompt_tokens",
                                  "completion_tokens", "cost_usd", "stream"}
        for args, expect in ((("--status", "429"), N), (("--status", "4xx"), 5 * N),
                             (("--key", "narrow"), N), (("--request-id", left[0]), 1),
                             (("--model", "no-such-model"), N)):
            result = await asyncio.to_thread(invoke, h.database_url, "logs", "--json", *args)
            assert result.exit_code == 0, result.stderr
            assert len(json.loads(result.stdout)) == expect, args
        # the table ends with the message; one request's every field, one per line
        result = await asyncio.to_thread(invoke, h.database_url, "logs", "--status", "429")
        assert result.stdout.splitlines()[0].endswith("ERROR_MESSAGE")
        assert "rate limit reached for key 'limited'" in result.stdout.splitlines()[1]
        refusal = by_kind["429"][0]
        result = await asyncio.to_thread(invoke, h.database_url, "logs", "--request-id", refusal["request_id"])
        fields = dict(line.split(None, 1) for line in result.stdout.splitlines())
        assert fields["ERROR_CODE"] == "rate_limit_exceeded" and fields["STATUS"] == "429"
        assert fields["ERROR_MESSAGE"] == refusal["error_message"]


async def test_retention_drops_whole_partitions(database_url: str) -> None:
    """Rows older than the retention go with their day's partition (DROP TABLE, no DELETE); the
    newest `retention` days stay; partitions for the next days exist before rows need them."""
    pool = open_pool(database_url, size=1, name="test-retention")
    await pool.open(wait=True)
    try:
        today = date(2031, 5, 20)
        days = [today - timedelta(days=i) for i in range(40, -1, -1)]
        async with pool.connection() as conn:
            await pg.drop_request_log_days(conn)  # only this test's days (the template has the session's)
            await store.ensure_partitions(conn, days)
            rows = []
            for i, day in enumerate(days):
                rec = RequestRecord(f"r{i}", datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp(),
                                    1.0, "POST", "/v1/chat/completions")
                rec.t_end, rec.status = 1.25, 200
                rows.append(rec.row("n1"))
            await store.write_batch(conn, rows, [("r0", rows[0][1], "n1", "{}", None, False)])
        dropped = await upkeep(pool, retention_days=30, today=today)
        assert sorted(dropped) == sorted(partition_name(t, d) for t in TABLES for d in days[:10])
        with psycopg.connect(database_url, autocommit=True) as conn:
            left = conn.execute("SELECT min(started_at), count(*) FROM request_log_rows").fetchone()
            bodies = conn.execute("SELECT count(*) FROM request_log_bodies").fetchone()
            ahead = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                 (partition_name("request_log_rows", today + timedelta(days=2)),)).fetchone()
        assert left is not None and left[1] == 31 and left[0].date() == today - timedelta(days=30)
        assert bodies == (0,) and ahead == (True,)
        assert await upkeep(pool, retention_days=30, today=today) == []  # idempotent
    finally:
        await pool.close()


async def test_the_deployments_tried_are_written_as_they_were(database_url: str) -> None:
    """`failover_path` goes in binary COPY packed by the request log's own text[] dumper: none, one,
    several (names in any script), and a missing name read back as they were written."""
    paths: list[list[str | None] | None] = [None, [], ["fake"], ["primary", "secondary-eu", "fake"],
                                            ["dépl-ünïcode-雲"], ["a", None, "b"], ["x" * 300]]
    pool = open_pool(database_url, size=1, name="test-failover-path")
    await pool.open(wait=True)
    try:
        now = datetime.now(UTC).timestamp()
        rows = []
        for i, tried in enumerate(paths):
            rec = RequestRecord(f"path{i}", now, 1.0, "POST", "/v1/chat/completions")
            rec.t_end, rec.status, rec.tried = 1.5, 200, tried
            rows.append(rec.row("n1"))
        async with pool.connection() as conn:
            await store.ensure_partitions(conn, {datetime.fromtimestamp(now, UTC).date()})
            await store.write_batch(conn, rows)
        with psycopg.connect(database_url, autocommit=True) as conn:
            got = dict(conn.execute("SELECT request_id, failover_path FROM request_log_rows "
                                    "WHERE request_id LIKE 'path%%'").fetchall())
        assert [got[f"path{i}"] for i in range(len(paths))] == paths
    finally:
        await pool.close()


class _NotedPath(list[str]):
    """A deployments list that notes when the COPY's dumper first reads it (row() never indexes it)."""

    def __init__(self, items: list[str], notes: list[str]) -> None:
        super().__init__(items)
        self.notes, self.read = notes, False

    def __getitem__(self, i: Any) -> Any:
        if not self.read:
            self.read = True
            self.notes.append("copied")
        return super().__getitem__(i)


def _longest_run(notes: list[str], kind: str) -> int:
    longest = run = 0
    for note in notes:
        run = run + 1 if note == kind else (run if note != "turn" else 0)
        longest = max(longest, run)
    return longest


async def test_a_batch_is_written_a_slice_at_a_time_with_the_loop_turning_between(database_url: str) -> None:
    """A batch's rows are made and COPYed at most ROWS_PER_TURN between two turns of the event loop:
    a batch at once held every request on the node for its whole length (11 ms at 5,000 rows)."""
    notes: list[str] = []

    class NotedRecord(RequestRecord):
        def row(self, node_id: str) -> tuple[Any, ...]:
            notes.append("row")
            return super().row(node_id)

    pool = open_pool(database_url, size=1, name="test-slices")
    await pool.open(wait=True)
    stop = asyncio.Event()

    async def turns() -> None:
        while not stop.is_set():
            notes.append("turn")
            await asyncio.sleep(0)

    try:
        size = 3 * store.ROWS_PER_TURN + 1
        writer = RequestLogWriter(pool, "n1", capacity=2 * size, interval=3600)
        for i in range(size):
            rec = NotedRecord(f"slice{i}", datetime.now(UTC).timestamp(), 1.0, "POST", "/v1/chat/completions")
            rec.t_end, rec.status, rec.tried = 1.1, 200, _NotedPath(["fake"], notes)
            writer.add(rec)
        ticking = asyncio.create_task(turns())
        await asyncio.sleep(0)
        assert await writer.flush_once()
        stop.set()
        await ticking
        assert (notes.count("row"), notes.count("copied"), writer.written) == (size, size, size)
        assert _longest_run(notes, "row") == store.ROWS_PER_TURN
        assert _longest_run(notes, "copied") == store.ROWS_PER_TURN
    finally:
        await pool.close()


async def test_a_row_the_database_refuses_is_dropped_and_counted_not_retried_forever(database_url: str) -> None:
    pool = open_pool(database_url, size=1, name="test-poison")
    await pool.open(wait=True)
    try:
        writer = RequestLogWriter(pool, "n1", capacity=10, interval=3600)
        for i, method in enumerate(("GET", "G\x00T", "POST")):  # Postgres text cannot hold NUL
            rec = RequestRecord(f"p{i}", datetime.now(UTC).timestamp(), 1.0, method, "/v1/\udcff\x00")
            rec.t_end, rec.status, rec.prompt_tokens = 1.1, 200, 2**70 if i == 2 else 5
            writer.add(rec)
        assert await writer.flush_all(10)
        assert (writer.written, writer.dropped, len(writer.buffer)) == (2, 1, 0)
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT request_id, path, prompt_tokens FROM request_log"
                                " ORDER BY request_id").fetchall()
        assert rows == [("p0", "/v1/?\ufffd", 5), ("p2", "/v1/?\ufffd", 2**63 - 1)]  # clamped, never wrapped
    finally:
        await pool.close()


async def test_flush_all_beside_a_write_in_flight_returns_once_its_rows_are_in(database_url: str) -> None:
    pool = open_pool(database_url, size=1, name="test-flush-beside")
    await pool.open(wait=True)
    try:
        writer = RequestLogWriter(pool, "n1", capacity=10, interval=3600)
        for i in range(3):
            rec = RequestRecord(f"inflight{i}", datetime.now(UTC).timestamp(), 1.0, "POST", "/v1/chat/completions")
            rec.t_end, rec.status = 1.1, 502
            writer.add(rec)
        held = await pool.getconn()  # the pool's one connection: the background writer waits mid-batch
        running = asyncio.create_task(writer.flush_once())
        await wait_until(lambda: writer.buffer.in_flight == 3, timeout=5)
        flushing = asyncio.create_task(writer.flush_all(10))
        await pool.putconn(held)
        assert await flushing
        with psycopg.connect(database_url, autocommit=True) as conn:
            count = conn.execute("SELECT count(*) FROM request_log_rows WHERE request_id LIKE 'inflight%%'").fetchone()
        assert count == (3,)
        assert await running
    finally:
        await pool.close()


async def test_error_bodies_are_captured_redacted_in_their_own_table(database_url: str) -> None:
    async with harness(database_url, capture_bodies="errors", capture_max_bytes=4096,
                       capture_redact=[r"card-\d{4}"]) as h:
        good = await h.create_key("good")
        await h.sync()
        client = oai(h.base, good)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        leaky = [{"role": "user", "content": f"my key {good} and card-1234 and {UPSTREAM_KEY}"}]
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="no-such-model", messages=leaky)  # type: ignore[arg-type]
        await flushed(h, 2)
        with psycopg.connect(h.database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT b.request_body, b.response_body, b.truncated, r.error_code "
                                "FROM request_log_bodies b JOIN request_log r USING (request_id)").fetchall()
            conn.execute("SET ROLE shieldes_audit_bodies")
            assert conn.execute("SELECT count(*) FROM request_log_bodies").fetchone() == (1,)
        assert len(rows) == 1  # the successful call kept no body
        request, response, truncated, code = rows[0]
        assert code == "model_not_found" and not truncated and "no-such-model" in request
        assert json.loads(response)["error"]["code"] == "model_not_found"
        for secret in (good, "card-1234", UPSTREAM_KEY):
            assert secret not in request
        assert request.count("[redacted]") == 3


async def test_credentials_pasted_or_in_tool_arguments_are_redacted(database_url: str) -> None:
    """A pasted HTTP request (Basic credentials, a cookie, Google's `?key=`) and secrets in a tool
    call's JSON-encoded `arguments` (escaped inside a string) are redacted; the rest is kept."""
    async with harness(database_url, capture_bodies="errors", capture_max_bytes=8192) as h:
        good = await h.create_key("good")
        await h.sync()
        args = json.dumps({"client_secret": 'cs-one"more', "refresh_token": "rt-two", "password": "pw-three",
                           "city": "Paris"})
        pasted = ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA==' -H 'Cookie: session=ck-four; b=ck-five' "
                  "'https://generativelanguage.googleapis.com/v1beta/models?alt=sse&key=gk-six&pageSize=5'")
        messages = [{"role": "user", "content": pasted},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "sign_in", "arguments": args}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "done"}]
        with pytest.raises(openai.NotFoundError):
            await oai(h.base, good).chat.completions.create(model="no-such-model", messages=messages)  # type: ignore[arg-type]
        await flushed(h, 1)
        with psycopg.connect(h.database_url, autocommit=True) as conn:
            (request,) = conn.execute("SELECT request_body FROM request_log_bodies").fetchone()  # type: ignore[misc]
        for secret in ("dXNlcjpwYXNzd29yZA", "ck-four", "ck-five", "gk-six", "cs-one", "more", "rt-two", "pw-three"):
            assert secret not in request, secret
        body = json.loads(request)  # still JSON, and so are the arguments
        kept = json.loads(body["messages"][1]["tool_calls"][0]["function"]["arguments"])
        assert kept == {"client_secret": "[redacted]", "refresh_token": "[redacted]", "password": "[redacted]",
                        "city": "Paris"}
        assert "alt=sse&key=[redacted]&pageSize=5" in body["messages"][0]["content"]


async def test_admin_api_and_console_bodies_are_never_captured(database_url: str) -> None:
    """A new admin token (shd-adm-..., which no redaction pattern knows) and an MCP server's header
    value are in the admin API's bodies: with capture on for everything, neither reaches
    request_log_bodies, while the rows stay and a gateway request's bodies are still kept."""
    boot = "boot-" + "b" * 40
    async with harness(database_url, capture_bodies="all", admin_token=boot, encryption_key="e" * 44) as h:
        headers = {"Authorization": f"Bearer {boot}"}
        async with aiohttp.ClientSession() as s:
            async with s.post(h.base + "/admin/v1/admin-tokens", json={"name": "ops", "role": "operator"},
                              headers=headers) as r:
                assert r.status == 201
                token = (await r.json())["token"]
            mcp = {"name": "tools", "url": "http://127.0.0.1:9/mcp", "headers": {"X-Tenant": "tenant-value-123456"}}
            async with s.post(h.base + "/admin/v1/mcp-servers", headers=headers, json=mcp) as r:
                assert r.status == 201, await r.text()
            async with s.get(h.base + "/ui/", headers=headers) as r:
                assert r.status == 200
        good = await h.create_key("good")
        await h.sync()
        await oai(h.base, good).chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        await flushed(h, 4)
        rows = h.sql("SELECT r.route, b.request_body, b.response_body FROM request_log r "
                     "LEFT JOIN request_log_bodies b USING (request_id) ORDER BY r.started_at")
    assert [r[0] for r in rows].count("/admin/v1/admin-tokens") == 1  # the row is kept
    assert {r[0] for r in rows if r[1] is not None or r[2] is not None} == {"/v1/chat/completions"}, rows
    text = repr(h.sql("SELECT * FROM request_log_bodies"))
    assert token not in text and "tenant-value-123456" not in text and "hello there" in text


async def test_logs_follow_prints_new_requests_as_json_lines(database_url: str) -> None:
    async with harness(database_url, request_log_interval=0.05) as h:
        good = await h.create_key("good")
        await h.sync()
        client = oai(h.base, good)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        await flushed(h, 1)
        env = {**os.environ, "SHIELDES_DATABASE_URL": h.database_url, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shieldes", "logs", "--follow", "--json", "--key", "good", "--interval", "0.1",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))  # the existing row
            assert first["key_name"] == "good" and first["status"] == 200
            later = []
            for _ in range(2):
                r = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
                later.append(r.headers["x-request-id"])
            seen = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))["request_id"] for _ in later]
            assert seen == later  # each new request once, in order
        finally:
            proc.terminate()
            await proc.wait()


async def test_logs_follow_prints_a_table_with_its_header_and_aligned_columns(database_url: str) -> None:
    async with harness(database_url, request_log_interval=0.05) as h:
        good = await h.create_key("good")
        await h.sync()
        client = oai(h.base, good)
        first_id = (await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MSGS)).headers["x-request-id"]  # type: ignore[arg-type]
        await flushed(h, 1)
        env = {**os.environ, "SHIELDES_DATABASE_URL": h.database_url, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shieldes", "logs", "--follow", "--key", "good", "--interval", "0.1",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None

            async def line() -> str:
                return (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()  # type: ignore[union-attr]

            header = await line()
            assert header.split()[:4] == ["STARTED_AT", "REQUEST_ID", "NODE_ID", "KEY_NAME"], header
            assert header.rstrip().endswith("ERROR_MESSAGE")
            row = await line()  # the existing row, each cell under its column's name
            assert row.index(first_id) == header.index("REQUEST_ID") and row.index("good") == header.index("KEY_NAME")
            later = (await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MSGS)).headers["x-request-id"]  # type: ignore[arg-type]
            row = await line()  # a later batch: the same columns, no second header
            assert row.index(later) == header.index("REQUEST_ID") and "200" in row.split()
        finally:
            proc.terminate()
            await proc.wait()


def test_logs_refuses_bad_filters_with_one_line(database_url: str) -> None:
    assert "malformed status" in refused(database_url, "logs", "--status", "teapot")
    assert "swap them" in refused(database_url, "logs", "--since", "2026-12-02", "--until", "2026-12-01")
    assert ok(database_url, "logs") == []


async def test_mid_stream_upstream_drop_is_logged_and_counted(database_url: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    async with harness(database_url) as h:
        good = await h.create_key("good")
        await h.sync()
        h.upstream.inject("/v1/chat/completions", disconnect_after=2)
        client = oai(h.base, good)
        stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError) as broke:
            async for _ in stream:
                pass
        await flushed(h, 1)
        (row,) = audit_rows_of(h.database_url)
        assert (row["status"], row["error_code"], row["stream"], row["deployment"]) == \
            (200, "upstream_stream_error", True, "openai")
        # why it broke, as the client was told, in the row and in the warning
        why = "upstream deployment 'openai' closed the connection mid-response"
        assert why in broke.value.message and why in row["error_message"]
        assert row["error_message"].startswith("upstream deployment openai failed mid-stream after")
        assert any(why in r.getMessage() and row["request_id"] in r.getMessage() for r in caplog.records
                   if r.levelname == "WARNING" and "mid-stream" in r.getMessage())
        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            text = await r.text()
        assert 'shieldes_upstream_errors_total{kind="mid_stream",provider="openai"} 1.0' in text
        assert 'shieldes_stream_drops_total{cause="upstream",provider="openai"} 1.0' in text
        assert "shieldes_time_to_first_token_seconds_count" in text


def audit_rows_of(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM request_log WHERE route <> '/metrics' ORDER BY started_at")
        return cur.fetchall()


async def test_responses_route_rows_carry_key_model_and_usage(database_url: str) -> None:
    async with harness(database_url) as h:
        good = await h.create_key("good")
        await h.sync()
        r = await oai(h.base, good).responses.with_raw_response.create(model="gpt-4o", input="hello there")
        await flushed(h, 1)
        (row,) = audit_rows_of(h.database_url)
        assert (row["request_id"], row["route"], row["key_name"], row["model"], row["status"]) == \
            (r.headers["x-request-id"], "/v1/responses", "good", "gpt-4o", 200)
        assert row["prompt_tokens"] and row["completion_tokens"] and row["cost_usd"] > 0
        assert row["attempts"] == 1 and row["deployment"] == "openai" and row["upstream_model"] == "gpt-4o"
        limited = oai(h.base, await h.create_key("limited", rpm=1))
        await h.sync()
        await limited.responses.create(model="gpt-4o", input="hello there")
        with pytest.raises(openai.RateLimitError):
            await limited.responses.create(model="gpt-4o", input="hello there")
        await flushed(h, 3)
        refused = audit_rows_of(h.database_url)[-1]
        assert (refused["status"], refused["model"], refused["attempts"]) == (429, "gpt-4o", 0)
        assert (refused["upstream_model"], refused["deployment"]) == (None, None)  # no upstream was sent anything


async def test_a_client_gone_before_its_json_answer_is_logged_as_cancelled_and_billed(database_url: str) -> None:
    """A client that gives up while the upstream is still answering (its own timeout) got nothing:
    the row says so (499, client_disconnected), not the 200 nobody received, with what was billed.
    On a route the front answers (chat) and on one aiohttp does (moderations)."""
    up = FakeUpstream(completion_tokens=8, api_key=UPSTREAM_KEY, models=("gpt-4o", "omni-moderation-latest"))
    async with harness(database_url, upstream=up) as h:
        await h.admin(AddProvider("mod", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("omni-moderation-latest",)))
        good = await h.create_key("good")
        await h.sync()
        calls = (("/v1/chat/completions", {"model": "gpt-4o", "messages": MSGS}, "chat"),
                 ("/v1/moderations", {"model": "omni-moderation-latest", "input": "hi"}, "moderation"))
        for path, body, rid in calls:
            up.inject(path, delay=1.0, times=1)
            async with aiohttp.ClientSession() as s:  # the client leaves once the upstream has the request
                sent = asyncio.create_task(s.post(h.base + path, json=body,
                                                  headers={"Authorization": f"Bearer {good}", "x-request-id": rid}))
                await wait_until(lambda p=path: up.requests_to(p) != [], timeout=10)
                sent.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await sent
        await flushed(h, 2)
        rows = {r["request_id"]: r for r in audit_rows_of(h.database_url)}
        for _, _, rid in calls:
            row = rows[rid]
            assert (row["status"], row["error_code"], row["attempts"]) == (499, "client_disconnected", 1), row
            assert row["error_message"].startswith("the client closed the connection before its answer (200) was sent")
            assert row["latency_ms"] >= 1000  # the upstream's answer came in after the client had left
        assert (rows["chat"]["prompt_tokens"], rows["chat"]["completion_tokens"]) == (2, 8)  # billed
        assert rows["chat"]["cost_nusd"] == 2 * 2500 + 8 * 10000
        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            text = await r.text()
        for route in ("/v1/chat/completions", "/v1/moderations"):
            assert f'shieldes_requests_total{{route="{route}",status="4xx"}} 1.0' in text


async def test_json_rows_of_every_model_route_carry_the_upstream_wait(database_url: str) -> None:
    """ttfb_ms (until the upstream's answer was in) on the JSON answers of Messages, Responses,
    the Gemini API and embeddings as on chat: the part of a slow request the upstream took."""
    from anthropic import AsyncAnthropic
    from google import genai
    from google.genai import types

    async with harness(database_url) as h:
        good = await h.create_key("good")
        await h.sync()
        h.upstream.inject("*", delay=0.2, times=None)  # every upstream answer takes 200 ms
        client = oai(h.base, good)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        await client.responses.create(model="gpt-4o", input="hello there", store=True)
        await client.embeddings.create(model="text-embedding-3-small", input="hello there")
        await AsyncAnthropic(base_url=h.base, api_key=good, max_retries=0).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        await genai.Client(api_key=good, http_options=types.HttpOptions(
            base_url=h.base, retry_options=types.HttpRetryOptions(attempts=1))).aio.models.generate_content(
            model="gpt-4o-mini", contents="Say hello")
        await flushed(h, 5)
        rows = audit_rows_of(h.database_url)
        assert len(rows) == 5
        for row in rows:
            assert row["status"] == 200 and not row["stream"], row
            assert row["ttfb_ms"] is not None and 200 <= row["ttfb_ms"] <= row["latency_ms"], row["route"]


async def test_a_websockets_turns_are_rows_named_after_the_connection(database_url: str) -> None:
    """Each response.create of a Responses WebSocket is a row of its own (model, tokens, cost),
    whose request id is the connection's x-request-id and the turn's number: the id the client
    logged for the connection leads to its turns, and a refused turn's error event names its row."""
    async with harness(database_url) as h:
        good = await h.create_key("good")
        await h.sync()
        url = h.base.replace("http://", "ws://") + "/v1/responses"
        terminal = ("response.completed", "response.failed", "error")
        async with aiohttp.ClientSession() as s, s.ws_connect(
                url, headers={"Authorization": f"Bearer {good}", "x-request-id": "conn-7"}) as ws:
            assert ws._response.headers["x-request-id"] == "conn-7"
            last = []
            for model in ("gpt-4o", "gpt-4o", "no-such-model"):
                await ws.send_json({"type": "response.create", "model": model, "input": "hello there"})
                while (event := json.loads(await ws.receive_str(timeout=10)))["type"] not in terminal:
                    pass
                last.append(event)
        assert [e["type"] for e in last] == ["response.completed", "response.completed", "error"]
        assert last[2]["headers"]["x-request-id"] == "conn-7.3"
        await flushed(h, 4)
        rows = {r["request_id"]: r for r in audit_rows_of(h.database_url)}
        assert sorted(rows) == ["conn-7", "conn-7.1", "conn-7.2", "conn-7.3"]
        assert (rows["conn-7"]["method"], rows["conn-7"]["status"]) == ("GET", 101)
        for rid in ("conn-7.1", "conn-7.2"):
            row = rows[rid]
            assert (row["method"], row["route"], row["model"], row["status"], row["stream"]) == \
                ("POST", "/v1/responses", "gpt-4o", 200, True)
            assert row["completion_tokens"] and row["cost_usd"] > 0
        assert (rows["conn-7.3"]["status"], rows["conn-7.3"]["error_code"]) == (404, "model_not_found")
        assert rows["conn-7.3"]["error_message"] == last[2]["error"]["message"]
        result = await asyncio.to_thread(invoke, h.database_url, "logs", "--json", "--request-id", "conn-7.2")
        assert [r["request_id"] for r in json.loads(result.stdout)] == ["conn-7.2"]
