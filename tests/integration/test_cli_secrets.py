"""No secret reaches the database in plaintext: dump every table as text and look for them."""

from __future__ import annotations

import psycopg

from shieldes import secrets
from tests.cli import ok, sql

PROVIDER_KEYS = ("sk-proj-PLAINTEXT-provider-key-123", "sk-ant-PLAINTEXT-anthropic-456")


def dump_database(url: str) -> str:
    """Every row of every table in the public schema (events, log_head, snapshots, ...), as text;
    a partitioned table's rows once (through the table, not its partitions as well)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1"
            ).fetchall()
        ]
        assert {"events", "log_head", "snapshots", "cluster_nodes", "leader_epoch"} <= set(tables)
        parts = []
        for t in tables:
            rows = conn.execute(f'SELECT t::text FROM "{t}" AS t').fetchall()
            parts.extend(r[0] for r in rows)
        return "\n".join(parts)


def test_no_secret_in_any_table(database_url: str) -> None:
    enc = {"SHIELDES_ENCRYPTION_KEY": "a-passphrase"}
    ok(
        database_url,
        "provider",
        "add",
        "openai",
        "--type",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--api-key",
        PROVIDER_KEYS[0],
        "--models",
        "gpt-4o",
        env=enc,
    )
    ok(
        database_url,
        "provider",
        "add",
        "claude",
        "--type",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
        "--api-key-env",
        "ANTHROPIC_API_KEY",
        "--models",
        "claude-3-5-haiku",
    )
    ok(database_url, "provider", "update", "claude", "--api-key", PROVIDER_KEYS[1], env=enc)
    created = ok(database_url, "key", "create", "--name", "app", "--budget", "3")
    rotated = ok(database_url, "key", "rotate", "app")
    other = ok(database_url, "key", "create", "--name", "other")
    ok(database_url, "key", "revoke", "other")
    key_secrets = [created["key"], rotated["key"], other["key"]]

    dump = dump_database(database_url)
    assert dump.count("virtual_key.created") == 4  # the two keys' events, and their rows in config_index
    for secret in (*key_secrets, *PROVIDER_KEYS):
        assert secret not in dump
        assert secret[len(secrets.KEY_PREFIX) + 8 :] not in dump  # not even the secret's tail
    # what is stored instead: hashes of the key secrets and encrypted provider keys
    assert secrets.hash_key(rotated["key"]) in dump
    refs = [
        r[0] for r in sql(database_url, "SELECT data->>'secret_ref' FROM events WHERE type LIKE 'provider.%'")
    ]
    assert refs[0].startswith("enc:") and refs[1] == "env:ANTHROPIC_API_KEY" and refs[2].startswith("enc:")
    assert secrets.resolve_secret(refs[2], "a-passphrase") == PROVIDER_KEYS[1]
