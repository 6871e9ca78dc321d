"""The embedded Postgres is stopped by its last user: not while another lease or an outside client
(psql, a node given the URL) holds it, not while pinned by `db url`; and a lease whose process
died does not count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from shieldes.embedded import EmbeddedInUse, EmbeddedPostgres
from tests import pg


@pytest.mark.timeout(180)
def test_last_user_stops_it_and_only_the_last(fresh_home: Path) -> None:
    tmp_path = fresh_home
    server = EmbeddedPostgres(tmp_path / "data")
    try:
        a = server.acquire("a")
        b = server.acquire("b")
        assert a.started and not b.started and a.url == b.url
        assert sorted(u.role for u in server.users()) == ["a", "b"]
        assert not a.release()  # b still holds it
        with psycopg.connect(b.url, autocommit=True) as outside:  # e.g. psql
            assert not b.release()  # the last lease, but a client is connected
            assert server.status().running
            outside.execute("SELECT 1")
        # a process that died holding a lease is not a user
        died = subprocess.run(
            [sys.executable, "-c", "import os, sys; from shieldes.embedded import EmbeddedPostgres; "
             f"EmbeddedPostgres(__import__('pathlib').Path({str(tmp_path / 'data')!r})).acquire('doomed'); "
             "os._exit(0)"], capture_output=True, text=True, timeout=60)
        assert died.returncode == 0, died.stderr
        assert server.users() == []
        assert server.acquire("c").release()  # nobody else: stopped
        assert not server.status().running and not pg.postgres_running_under(tmp_path)

        pinned = server.acquire("db url", pin=True)
        assert not pinned.release() and server.status().pinned  # kept for psql
        from pgserver._commands import POSTGRES_BIN_PATH  # the psql shipped with the embedded server

        psql = subprocess.run([str(POSTGRES_BIN_PATH / "psql"), pinned.url, "-tAc", "SELECT 40 + 2"],
                              capture_output=True, text=True, timeout=60)
        assert psql.stdout.strip() == "42", psql.stderr
        holder = server.acquire("node")
        with pytest.raises(EmbeddedInUse, match="node"):
            server.stop()
        assert server.status().pinned  # a refused stop changes nothing: still kept for psql
        assert not holder.release() and server.status().running  # the node's exit leaves it running
        holder = server.acquire("node")
        assert server.stop(force=True) and not pg.postgres_running_under(tmp_path)
        holder.release()
    finally:
        server.stop(force=True)
