"""Direct-mode CLI writes and `shieldes db status` on a stalled database (a table locked by another
session, as in test_admin_read_stall.py): each ends within SHIELDES_DB_ADMIN_READ_TIMEOUT with one
error line (a write's: it may or may not have landed, which command shows it, run `shieldes
doctor`); once the lock goes the log holds no half write and the same command works."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import psycopg

from tests.integration.test_cli_remote import ROOT, Ran

WAIT = 1.0  # db_admin_read_timeout here, lowered to keep the test fast
LIMIT = WAIT + 15  # a Python start, the bound and the cancellation; a hang lasts until the lock goes


async def timed(*args: str, database_url: str) -> tuple[Ran, float]:
    """`python -m shieldes ARGS` in direct mode, killed past LIMIT (so a hang fails the test rather
    than holding it); its outcome and how long it took."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHIELDES_ACTOR": "tester", "SHIELDES_ENCRYPTION_KEY": "",
           "SHIELDES_ADMIN_URL": "", "SHIELDES_DATABASE_URL": database_url,
           "SHIELDES_DB_ADMIN_READ_TIMEOUT": str(WAIT)}
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "shieldes", *args, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), LIMIT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"`shieldes {' '.join(args)}` still waited after {LIMIT:g} s") from None
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode()), time.monotonic() - began


def unconfirmed(ran: Ran, command: str, shows: str) -> None:
    line = ran.error()
    assert f"`shieldes {command}` was not confirmed" in line and f"did not answer within {WAIT:g} s" in line, line
    assert "may or may not have been written" in line and f"`{shows}`" in line, line
    assert "`shieldes audit log`" in line and "shieldes doctor" in line, line


def config_events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE stream = 'config'").fetchone()
    assert row is not None
    return int(row[0])


async def test_key_create_revoke_and_budget_set_on_a_stalled_database_end_within_the_bound(
        database_url: str) -> None:
    async def run(*args: str) -> Ran:
        return (await timed(*args, database_url=database_url))[0]

    assert (await run("key", "create", "--name", "app", "--models", "gpt-4o")).code == 0
    before = config_events(database_url)
    writes = ((("key", "create", "--name", "new", "--models", "gpt-4o"), "shieldes key list"),
              (("budget", "set", "app", "--amount", "5"), "shieldes budget show"),
              (("key", "revoke", "app"), "shieldes key list"))
    # the log a write reads and appends to (its append waits 5 s for the append lock: past the bound
    # here), then the schema revision it checks first (a read nothing else bounds)
    for tables in ("events, log_head", "alembic_version"):
        with psycopg.connect(database_url) as locker:
            locker.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
            for args, shows in writes:
                ran, took = await timed(*args, database_url=database_url)
                unconfirmed(ran, " ".join(args[:2]), shows)
                assert WAIT <= took < WAIT + 10, (args, took)
    # the locks gone: no write landed (each was cancelled before its COMMIT), and `key list` says so
    assert config_events(database_url) == before
    keys = (await run("--json", "key", "list", "--all")).json()
    assert [(k["name"], k["status"]) for k in keys] == [("app", "active")], keys
    for args, _ in writes:  # run again, each lands once
        assert (await run(*args)).code == 0, args
    keys = (await run("--json", "key", "list", "--all")).json()
    assert sorted((k["name"], k["status"]) for k in keys) == [("app", "revoked"), ("new", "active")], keys
    assert config_events(database_url) == before + 3


async def test_db_status_on_a_stalled_database_ends_within_the_bound(database_url: str) -> None:
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")  # what the status reads
        ran, took = await timed("db", "status", database_url=database_url)
        line = ran.error()
        assert "`shieldes db status` cannot read the database" in line, line
        assert f"did not answer within {WAIT:g} s" in line and "shieldes doctor" in line, line
        assert WAIT <= took < LIMIT, took
    ran, _ = await timed("--json", "db", "status", database_url=database_url)  # the lock gone
    status = ran.json()
    assert status["running"] is True and status["schema_revision"] == status["schema_head"], status
