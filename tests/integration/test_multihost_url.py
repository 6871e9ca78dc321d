"""libpq multi-host URLs (a failover pair: `postgresql://u@host1:5432,host2:5432/db?...`) work for
`alembic upgrade head`, `shieldes db upgrade` and every CLI command, as they do for the nodes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

from psycopg.conninfo import conninfo_to_dict

from shieldes import db
from tests.cli import ok

ROOT = Path(__file__).resolve().parents[2]


def multi_host(url: str) -> str:
    """The same database behind a dead first host: 127.0.0.1:1 refuses, libpq moves on to the real
    server (a Unix socket directory, percent-encoded as libpq allows in the host list)."""
    info = conninfo_to_dict(url)
    socket_dir = quote(str(info["host"]), safe="")
    name = urlsplit(url).path.lstrip("/")
    return (f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:1,{socket_dir}:{info.get('port', 5432)}/"
            f"{name}?target_session_attrs=read-write&connect_timeout=3")


def test_alembic_and_cli_accept_a_multi_host_url(empty_database_url: str) -> None:
    url = multi_host(empty_database_url)
    env = {**os.environ, "SHIELDES_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with db.sync_connection(empty_database_url) as conn:
        assert db.schema_revision(conn) == db.SCHEMA_HEAD
    status = ok(url, "db", "upgrade")  # already at head: a no-op that reports where it looked
    assert "127.0.0.1:1," in status["database"] and "***" not in status["database"]
    ok(url, "team", "create", "platform")
    assert [t["name"] for t in ok(url, "team", "list")] == ["platform"]


def test_error_messages_name_every_host_without_the_password() -> None:
    url = "postgresql://app:s3cret@db-a:5432,db-b:5433/shieldes?target_session_attrs=read-write"
    assert db.describe_url(url) == "app@db-a:5432,db-b:5433/shieldes"
    assert "s3cret" not in db.redact_url(url) and "db-b:5433" in db.redact_url(url)
    assert "s3cret" not in db.translate(OSError("connection refused"), url).message


def test_a_password_never_prints_however_the_url_gives_it(database_url: str) -> None:
    """`db status` shows an external URL, and the refusal of a malformed one quotes it: the password
    is masked in `user:password@` with or without a scheme, and as a `password=` parameter."""
    sep = "&" if "?" in database_url else "?"
    status = ok(f"{database_url}{sep}password=S3cretPw", "db", "status")  # the test server trusts local users
    assert status["mode"] == "external" and "S3cretPw" not in str(status) and "password=***" in status["url"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
    for url in ("app:S3cretPw@db.example:5432/gw", "mysql://app:S3cretPw@db.example/gw",
                "host=db.example password=S3cretPw dbname=gw"):
        refused = subprocess.run([sys.executable, "-m", "shieldes", "key", "list"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60, env={**env, "SHIELDES_DATABASE_URL": url,
                                                             "PYTHONPATH": str(ROOT)})
        assert refused.returncode == 1 and "must look like postgresql://" in refused.stderr, refused.stderr
        assert "S3cretPw" not in refused.stderr and "***" in refused.stderr, refused.stderr
