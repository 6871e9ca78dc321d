"""The audit role reads the audit views and nothing secret: no raw table (events, snapshots,
cluster_nodes, ...), no key hash, no provider secret reference, through any view it may read."""

from __future__ import annotations

import psycopg
import pytest

from shieldes.secrets import hash_key
from tests.cli import ok

ENC = {"SHIELDES_ENCRYPTION_KEY": "a-passphrase"}
RAW_TABLES = ("events", "config_index", "log_head", "snapshots", "cluster_nodes", "leader_epoch", "alembic_version",
              "request_log_rows", "request_log_bodies")


def test_audit_role_sees_views_but_no_secret(database_url: str) -> None:
    ok(database_url, "provider", "add", "openai", "--type", "openai", "--base-url", "https://api.openai.com/v1",
       "--api-key", "sk-proj-PLAINTEXT-1", "--models", "gpt-4o", env=ENC)
    ok(database_url, "provider", "add", "other", "--type", "openai", "--base-url", "http://localhost:9/v1",
       "--api-key-env", "OTHER_KEY", "--models", "m1")
    ok(database_url, "provider", "update", "openai", "--api-key", "sk-proj-PLAINTEXT-2", env=ENC)
    created = ok(database_url, "key", "create", "--name", "app")
    rotated = ok(database_url, "key", "rotate", "app")
    secrets = [created["key"], rotated["key"], "sk-proj-PLAINTEXT-1", "sk-proj-PLAINTEXT-2"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        hashes = [r[0] for r in conn.execute(
            "SELECT data->>'key_hash' FROM events WHERE data ? 'key_hash'").fetchall()]
        refs = [r[0] for r in conn.execute(
            "SELECT data->>'secret_ref' FROM events WHERE data->>'secret_ref' IS NOT NULL").fetchall()]
        assert len(hashes) == 2 and hash_key(created["key"]) in hashes and len(refs) == 3
        granted = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.role_table_grants WHERE grantee = 'shieldes_audit' "
            "AND privilege_type = 'SELECT'").fetchall()]
        assert {"audit_log", "usage_daily"} <= set(granted)
        assert not set(granted) & set(RAW_TABLES)
        conn.execute("SET ROLE shieldes_audit")
        for table in RAW_TABLES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")
            conn.execute("ROLLBACK") if conn.info.transaction_status else None
        visible = []
        for view in granted:
            visible += [r[0] for r in conn.execute(f'SELECT v::text FROM "{view}" AS v').fetchall()]
        text = "\n".join(visible)
    assert "virtual_key.rotated" in text and "provider.updated" in text  # the audit trail is there
    for needle in [*secrets, *hashes, *refs, "enc:", "env:OTHER_KEY", "key_hash", "secret_ref"]:
        assert needle not in text, needle
