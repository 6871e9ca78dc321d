"""The schema comes only from alembic; code refuses a database that is not at head."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from shieldes import db
from shieldes.errors import SchemaNotAtHead

ROOT = Path(__file__).resolve().parents[2]


def test_code_head_matches_alembic_head() -> None:
    script = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
    assert script.get_current_head() == db.SCHEMA_HEAD


def test_alembic_upgrade_head_from_repo_root_uses_the_env_url(empty_database_url: str) -> None:
    env = {**os.environ, "SHIELDES_DATABASE_URL": empty_database_url, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_database_url) as conn:
        assert db.schema_revision(conn) == db.SCHEMA_HEAD
        views = {r[0] for r in conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    assert {"audit_log", "usage_daily"} <= views


def test_not_at_head_is_refused_with_the_command_to_run(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url) as conn, pytest.raises(SchemaNotAtHead, match="shieldes db upgrade"):
        db.require_head(db.schema_revision(conn))
    db.upgrade(empty_database_url, "0001")
    with psycopg.connect(empty_database_url) as conn, pytest.raises(SchemaNotAtHead, match="revision 0001"):
        db.require_head(db.schema_revision(conn))


def test_a_schema_newer_than_this_release_is_refused_in_one_line_without_bad_advice(
        empty_database_url: str) -> None:
    # a node or CLI of the previous release during a rolling upgrade: the migration already ran
    db.upgrade(empty_database_url)
    newer = f"{int(db.SCHEMA_HEAD) + 1:04d}"
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (newer,))
        with pytest.raises(SchemaNotAtHead, match=f"at revision {newer}, newer than this shieldes") as refused:
            db.require_head(db.schema_revision(conn))
    assert "db upgrade" not in str(refused.value)
    env = {**os.environ, "SHIELDES_DATABASE_URL": empty_database_url, "PYTHONPATH": str(ROOT)}
    for args in (["db", "upgrade"], ["key", "list"]):
        result = subprocess.run([sys.executable, "-m", "shieldes", *args], cwd=ROOT, env=env, capture_output=True,
                                text=True)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: the database schema is at revision {newer}, newer than"), lines[0]
        assert "finish the rolling upgrade" in lines[0]


def test_cli_refuses_unreachable_database_in_one_line() -> None:
    env = {**os.environ, "SHIELDES_DATABASE_URL": "postgresql://u:secretpw@127.0.0.1:1/x", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "shieldes", "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Postgres"), result.stderr
    assert "secretpw" not in result.stderr
