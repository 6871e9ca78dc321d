"""Two real Postgres servers for failover tests: a primary and a streaming replica made with
pg_basebackup, on 127.0.0.1 TCP ports, with the binaries the `pgserver` package ships. As root the
servers run as the `pgserver` system user (Postgres refuses to run as root), as pgserver does."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.ports import free_port as _free_port


def _bin_dir() -> Path:
    import pgserver  # deferred: importing it has side effects

    return Path(pgserver.__file__).parent / "pginstall" / "bin"




def _run_user() -> str | None:
    return "pgserver" if os.geteuid() == 0 else None


def _own(path: Path) -> None:
    user = _run_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid)


@dataclass
class PgServer:
    data: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?connect_timeout=3"

    def _tool(self, name: str, *args: str, check: bool = True, timeout: float = 60) -> None:
        done = subprocess.run([str(_bin_dir() / name), *args], user=_run_user(), capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            output = (done.stderr + done.stdout).strip()[-2000:]
            raise RuntimeError(f"{name} {' '.join(args)} failed ({done.returncode}): {output}")

    def start(self) -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def promote(self, timeout: float = 60.0) -> None:
        """Promote and wait until it accepts writes (pg_ctl's own wait can give up early on a
        loaded machine: the condition checked is the server's own answer)."""
        deadline = time.monotonic() + timeout
        self._tool("pg_ctl", "-D", str(self.data), "-w", "-t", str(int(timeout)), "promote", check=False)
        while not self.is_primary():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.data} was not promoted: see {self.data / 'server.log'}")
            if not (self.data / "promote").exists():
                self._tool("pg_ctl", "-D", str(self.data), "promote", check=False)
            time.sleep(0.05)

    def is_primary(self) -> bool:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            row = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
            return bool(row and row[0])


def make_primary(root: Path) -> PgServer:
    data = root / "primary"
    data.mkdir(parents=True)
    _own(root)
    server = PgServer(data, _free_port())
    server._tool("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"\nport = {server.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data}'\n"
                   "wal_level = replica\nmax_wal_senders = 4\nwal_keep_size = 64MB\nfsync = off\n")
    server.start()
    return server


def make_replica(root: Path, primary: PgServer, *, via_port: int | None = None) -> PgServer:
    """A streaming replica of `primary`; `via_port` routes its replication connection through a
    proxy (cut it to make the replica lag)."""
    data = root / "replica"
    server = PgServer(data, _free_port())
    server._tool("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", str(data),
                 "-R", "-X", "stream", "-c", "fast", "--no-sync")
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"\nport = {server.port}\nunix_socket_directories = '{data}'\n")
    if via_port is not None:  # pg_basebackup -R wrote primary_conninfo here; the last line wins
        with (data / "postgresql.auto.conf").open("a") as auto:
            auto.write(f"primary_conninfo = 'host=127.0.0.1 port={via_port} user=postgres'\n")
    server.start()
    return server


def wait_replayed(primary: PgServer, replica: PgServer, timeout: float = 30.0) -> None:
    """Until the replica has replayed everything the primary has written so far."""
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert row is not None
        target = row[0]
    deadline = time.monotonic() + timeout
    with psycopg.connect(replica.url(), autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                raise AssertionError("replica did not catch up")
            time.sleep(0.02)


def make_synchronous(primary: PgServer, timeout: float = 30.0) -> None:
    """Every commit on the primary waits until the replica has flushed it (synchronous replication),
    so nothing acknowledged can be missing from the replica when it is promoted."""
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone()
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                raise AssertionError("the replica did not become synchronous")
            time.sleep(0.02)


def remove(root: Path, *servers: PgServer) -> None:
    for s in servers:
        s.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)
