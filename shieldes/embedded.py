"""The embedded Postgres under the data dir: started by its first user, stopped by its last.

Layout of the data dir: `pg/` (PGDATA), `users/` (one lease file per process using the server,
each held under an exclusive flock for the lease's lifetime, so a crashed process never counts),
`embedded.lock` (serializes start and stop), `pinned` (present while an operator asked for the
server to stay up: `shieldes db start` / `shieldes db url`).

Who stops it: whoever releases the last lease, when no client outside shieldes is connected
(`pg_stat_activity`) and the server is not pinned. The kernel drops a dead process's flock, so a
killed node is not counted; the next release or `shieldes db stop` stops the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from shieldes.errors import DatabaseUnavailable, ShieldesError

log = logging.getLogger(__name__)
STOP_TIMEOUT = 30.0


class _DemoteToDebug(logging.Filter):
    """pgserver logs initdb/pg_ctl output at INFO and ERROR: ours to show only in debug logs (a
    failure reaches the user as one DatabaseUnavailable line naming the server log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("shieldes").isEnabledFor(logging.DEBUG)


def _quiet_pgserver() -> None:
    logger = logging.getLogger("pgserver")
    if not any(isinstance(f, _DemoteToDebug) for f in logger.filters):
        logger.addFilter(_DemoteToDebug())


@dataclass(frozen=True)
class User:
    pid: int
    role: str
    since: float


@dataclass(frozen=True)
class Status:
    data_dir: Path
    pgdata: Path
    initialized: bool
    running: bool
    pid: int | None
    url: str | None
    pinned: bool
    users: list[User] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "pgdata": str(self.pgdata),
            "initialized": self.initialized,
            "running": self.running,
            "pid": self.pid,
            "url": self.url,
            "pinned": self.pinned,
            "users": [{"pid": u.pid, "role": u.role, "since": u.since} for u in self.users],
        }


class Lease:
    """One process's use of the embedded server; `release()` stops the server if it was the last."""

    def __init__(self, server: EmbeddedPostgres, url: str, handle: IO[str], path: Path, started: bool) -> None:
        self.server = server
        self.url = url
        self.started = started  # this lease started the server (rather than joining a running one)
        self._handle: IO[str] | None = handle
        self._path = path

    def release(self) -> bool:
        """Give up this process's use; True when that stopped the server."""
        if self._handle is None:
            return False
        with self.server._mutex():
            self._path.unlink(missing_ok=True)
            self._handle.close()  # drops the flock
            self._handle = None
            return self.server._stop_if_unused()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.pgdata = self.data_dir / "pg"
        self.users_dir = self.data_dir / "users"
        self.pin_path = self.data_dir / "pinned"
        self.lock_path = self.data_dir / "embedded.lock"

    # --- inspection (no side effects) -------------------------------------------------------------

    def _postmaster(self) -> tuple[int, str] | None:
        """(pid, url) of the running server, from postmaster.pid; None when it is not running."""
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.utils import PostmasterInfo  # deferred: pgserver's import has side effects

        try:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
        except (OSError, ValueError, AssertionError):  # a half-written pid file: starting or stopping
            return None
        if info is None or not info.is_running() or info.status != "ready":
            return None
        return info.pid, str(info.get_uri())

    def users(self, *, prune: bool = False) -> list[User]:
        """Processes holding a lease now (a dead holder's flock is gone: its file is stale and,
        with `prune` (under the mutex, so no lease is being created), removed)."""
        out: list[User] = []
        if not self.users_dir.is_dir():
            return out
        for path in sorted(self.users_dir.glob("*.lease")):
            try:
                with path.open("r") as f:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        data = json.loads(f.read() or "{}")
                        out.append(User(int(data.get("pid", 0)), str(data.get("role", "?")),
                                        float(data.get("since", 0))))
                        continue
                if prune:
                    path.unlink(missing_ok=True)  # stale: its holder died without releasing
            except (OSError, ValueError):
                continue
        return out

    def status(self) -> Status:
        running = self._postmaster()
        return Status(
            data_dir=self.data_dir, pgdata=self.pgdata,
            initialized=(self.pgdata / "PG_VERSION").exists(),
            running=running is not None, pid=running[0] if running else None,
            url=running[1] if running else None, pinned=self.pin_path.exists(), users=self.users(),
        )

    # --- lifecycle ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def acquire(self, role: str, *, pin: bool = False) -> Lease:
        """Start the server if needed and register this process as a user until `release()`."""
        with self._mutex():
            running = self._postmaster()
            started = running is None
            if running is None:
                self.pin_path.unlink(missing_ok=True)  # a pin outlives no server
                url = self._start()
            else:
                url = running[1]
            if pin:
                self.pin_path.write_text(f"{os.getpid()}\n")
            self.users_dir.mkdir(parents=True, exist_ok=True)
            path = self.users_dir / f"{os.getpid()}-{secrets.token_hex(4)}.lease"
            handle = path.open("w")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.write(json.dumps({"pid": os.getpid(), "role": role, "since": time.time()}))
            handle.flush()
        return Lease(self, url, handle, path, started)

    def _start(self) -> str:
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        _quiet_pgserver()
        import pgserver  # deferred: importing it has side effects (locks, runtime dir)

        self.pgdata.mkdir(parents=True, exist_ok=True)
        fresh = not (self.pgdata / "PG_VERSION").exists()
        if fresh:
            log.info("creating the embedded Postgres in %s (first run)", self.pgdata)
        try:
            # constructed directly (not get_server, which caches per process): after a stop in this
            # process, a later start must really start
            server = pgserver.PostgresServer(self.pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
        except Exception as exc:  # pgserver raises plain exceptions with stderr inside
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(
                f"could not start the embedded Postgres in {self.pgdata}: {first} (server log: "
                f"{self.pgdata / 'log'}); set SHIELDES_DATABASE_URL to use an external server"
            ) from exc
        url = str(server.get_uri())
        log.info("started the embedded Postgres (pid %s) in %s", server.get_pid(), self.pgdata)
        return url

    def _stop_if_unused(self) -> bool:
        """Under the mutex: stop the server when no lease, no outside client and no pin holds it."""
        running = self._postmaster()
        if running is None or self.pin_path.exists() or self.users(prune=True):
            return False
        if outside_clients(running[1]):
            log.info("leaving the embedded Postgres running: other clients are connected")
            return False
        self._pg_ctl_stop()
        return True

    def stop(self, *, force: bool = False) -> bool:
        """`shieldes db stop`: True when a running server was stopped. Refuses while shieldes
        processes use it, unless `force` (they then see the database as unreachable)."""
        with self._mutex():
            running = self._postmaster()
            if running is None:
                self.pin_path.unlink(missing_ok=True)
                return False
            users = self.users(prune=True)
            if users and not force:  # refused: nothing changes (a `db url` pin keeps holding it)
                who = ", ".join(f"{u.role} (pid {u.pid})" for u in users)
                raise EmbeddedInUse(
                    f"the embedded Postgres is in use by {who}; stop those first, or pass --force"
                )
            self.pin_path.unlink(missing_ok=True)
            self._pg_ctl_stop()
            return True

    def _pg_ctl_stop(self) -> None:
        """A fast shutdown, as `pg_ctl stop -m fast` does it: SIGINT to the postmaster, then wait.
        Signalled directly, since pg_ctl would need (as root: pgserver's system user) to traverse
        every parent of the data dir, which a shared /tmp does not always allow."""
        import psutil  # a dependency of pgserver

        running = self._postmaster()
        if running is None:
            return
        try:
            proc = psutil.Process(running[0])
            for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                proc.send_signal(sig)
                try:
                    proc.wait(wait)
                    break
                except psutil.TimeoutExpired:
                    log.warning("the embedded Postgres (pid %d) did not stop after %s; escalating",
                                proc.pid, signal.Signals(sig).name)
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied as exc:
            raise DatabaseUnavailable(
                f"could not stop the embedded Postgres in {self.pgdata}: not allowed to signal pid {exc.pid}; "
                "stop it as its owner"
            ) from None
        log.info("stopped the embedded Postgres in %s", self.pgdata)


class EmbeddedInUse(ShieldesError):
    status = 409
    code = "embedded_in_use"


def outside_clients(url: str, settle: float = 2.0) -> int:
    """Client connections other than this one (psql, another tool, a node given the URL directly).
    A backend outlives its client's close by a few milliseconds, so a count above zero is asked
    again for up to `settle` seconds before it is believed."""
    deadline = time.monotonic() + settle
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid()"
                ).fetchone()
                count = int(row[0]) if row else 0
                if count == 0 or time.monotonic() >= deadline:
                    return count
                time.sleep(0.05)
    except psycopg.Error:
        return 0  # cannot ask: the server is going away anyway
