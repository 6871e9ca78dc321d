"""Admin reads on a stalled database: usage, the audit log, the request log, the config at a
point and the cluster each answer a 503 within SHIELDES_DB_ADMIN_READ_TIMEOUT saying what to do,
never a request held until the lock goes; the CLI prints that message in remote and direct mode
(there also `config show`/`diff` and the config lists; `audit verify` and `logs --follow` bound
each read, `doctor` reports the stall); chat is served meanwhile."""

from __future__ import annotations

import asyncio
import json
import time

import openai
import psycopg

from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness
from tests.integration.test_cli_remote import BOOT, Ran, remote, shieldes

WAIT = 1.0  # db_admin_read_timeout here: the bound the test checks, lowered to keep it fast
# What the admin reads read: another session holds them (a lock held, as a stalled server would)
TABLES = "events, usage_deltas, request_log_rows"
READS = ("/admin/v1/usage", "/admin/v1/audit", "/admin/v1/requests", "/admin/v1/config?at=1")


def stalled_line(ran: Ran, *words: str) -> str:
    line = ran.error()
    assert f"did not answer within {WAIT:g} s" in line and "shieldes doctor" in line, line
    assert all(w in line for w in words), (words, line)
    return line


async def test_a_stalled_database_is_a_503_on_admin_reads_within_their_bound_and_chat_is_served(
        database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT, db_admin_read_timeout=WAIT) as h:
        secret = await h.create_key("app", models=("gpt-4o",))
        await h.sync()
        api = AdminClient(h.base, BOOT)
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=WAIT * 10)
        with psycopg.connect(database_url) as locker:
            locker.execute(f"LOCK TABLE {TABLES} IN ACCESS EXCLUSIVE MODE")
            for path in READS:
                began = time.monotonic()
                status, body = await asyncio.wait_for(api.get(path), WAIT * 10)
                waited = time.monotonic() - began
                assert status == 503 and body["error"]["code"] == "database_unavailable", (path, body)
                message = body["error"]["message"]
                assert f"did not answer within {WAIT:g} s" in message and "retry" in message, message
                assert "shieldes doctor" in message and "chat requests are served meanwhile" in message, message
                assert WAIT <= waited < WAIT * 4, (path, waited)
            chat = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert chat.choices[0].message.content == "Hello from the fake upstream"

            stalled_line(await remote(h, "usage"), "HTTP 503", "GET /admin/v1/")
            stalled_line(await remote(h, "logs"), "HTTP 503", "GET /admin/v1/requests")
            env = {"SHIELDES_DATABASE_URL": database_url, "SHIELDES_DB_ADMIN_READ_TIMEOUT": str(WAIT)}
            stalled_line(await shieldes("usage", **env), "`shieldes usage` cannot read the database")
            stalled_line(await shieldes("audit", "log", **env), "`shieldes audit log` cannot read the database")
            stalled_line(await shieldes("logs", **env), "`shieldes logs` cannot read the database")
        for path in READS:  # the lock gone, every read answers
            status, body = await api.get(path)
            assert status == 200, (path, body)
        assert (await remote(h, "usage")).code == 0
        await client.close()


async def test_config_history_cluster_and_config_lists_on_a_stalled_database_answer_within_the_bound(
        database_url: str) -> None:
    """`config show`/`config diff` (direct), the cluster (`GET /admin/v1/cluster`, `cluster status` in
    both modes) and a config list read in direct mode (`key list`) each give the same answer as the
    other admin reads within the bound; the cluster's read is cancelled, not left in a thread."""
    async with harness(database_url, admin_token=BOOT, db_admin_read_timeout=WAIT) as h:
        await h.create_key("app", models=("gpt-4o",))
        await h.sync()
        api = AdminClient(h.base, BOOT)
        env = {"SHIELDES_DATABASE_URL": database_url, "SHIELDES_DB_ADMIN_READ_TIMEOUT": str(WAIT)}
        with psycopg.connect(database_url) as locker:
            # the config events, and the log head the cluster's read starts from
            locker.execute("LOCK TABLE events, log_head IN ACCESS EXCLUSIVE MODE")
            began = time.monotonic()
            status, body = await asyncio.wait_for(api.get("/admin/v1/cluster"), WAIT * 10)
            waited = time.monotonic() - began
            assert status == 503 and body["error"]["code"] == "database_unavailable", body
            message = body["error"]["message"]
            assert f"did not answer within {WAIT:g} s" in message and "shieldes doctor" in message, message
            assert WAIT <= waited < WAIT * 4, waited
            stalled_line(await remote(h, "cluster", "status"), "HTTP 503", "GET /admin/v1/cluster")
            for args in (("config", "show"), ("config", "show", "--at", "1"), ("config", "diff", "1", "2"),
                         ("cluster", "status"), ("key", "list")):
                began = time.monotonic()
                ran = await shieldes(*args, **env)
                line = stalled_line(ran, f"`shieldes {' '.join(args[:2])}` cannot read the database")
                # a Python start and the read's bound; a hang would last until the lock goes
                assert time.monotonic() - began < WAIT + 15, (args, line)
        status, body = await api.get("/admin/v1/cluster")  # the lock gone, the cluster answers
        assert status == 200 and body["log_head"] >= 1, body
        assert (await remote(h, "cluster", "status")).code == 0
        assert (await shieldes("config", "diff", "1", "2", **env)).code == 0


async def test_doctor_audit_verify_and_logs_follow_on_a_stalled_database_end_within_the_bound(
        database_url: str) -> None:
    """`shieldes doctor` (the command every stalled read names) reports the stall as a failed check;
    `audit verify` and `logs --follow` bound each of their reads and end with the same error line."""
    env = {"SHIELDES_DATABASE_URL": database_url, "SHIELDES_DB_ADMIN_READ_TIMEOUT": str(WAIT)}
    assert (await shieldes("key", "create", "--name", "app", "--models", "gpt-4o", **env)).code == 0
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE events, request_log_rows IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        ran = await shieldes("doctor", "--json", **env)
        assert time.monotonic() - began < WAIT + 15 and ran.code == 1, (ran.code, ran.err)
        checks = {(c["check"], c["ok"]): c for c in json.loads(ran.out)["checks"]}
        stalled = checks[("database", False)]
        assert f"did not answer within {WAIT:g} s" in stalled["detail"], stalled
        assert "pg_stat_activity" in stalled["fix"] and ("schema", True) in checks, checks
        assert checks[("config", False)]["detail"].startswith("skipped"), checks
        for command, args in (("audit verify", ()), ("logs", ("--follow",))):
            began = time.monotonic()
            ran = await shieldes(*command.split(), *args, **env)
            stalled_line(ran, f"`shieldes {command}` cannot read the database")
            assert time.monotonic() - began < WAIT + 15, (args, ran.err)
    ran = await shieldes("doctor", "--json", **env)  # the lock gone: the database and the config read
    assert ("database", False) not in {(c["check"], c["ok"]) for c in json.loads(ran.out)["checks"]}, ran.out
    assert (await shieldes("audit", "verify", **env)).code == 0


async def test_a_value_postgres_refuses_is_a_400_naming_it_not_a_retry(database_url: str) -> None:
    """Text with a NUL character cannot reach Postgres: the read is refused for its parameter, with
    what to change, not a 503 to retry (the same read would be refused again) nor a 500."""
    async with harness(database_url, admin_token=BOOT) as h:
        status, body = await AdminClient(h.base, BOOT).get("/admin/v1/audit", actor="a\x00b")
        assert status == 400 and body["error"]["code"] == "invalid_request", body
        assert "query parameter" in body["error"]["message"], body
