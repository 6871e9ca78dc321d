"""Time travel: `shieldes config show --at` and `shieldes config diff` over the config stream."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.commands import RevokeKey
from shieldes.projections.shared_commands import AddProvider, SetPricing
from tests.integration.usage_log import UsageWriter, cli_json, run_cli, seed_config


async def test_show_and_diff_across_time(database_url: str, pool: AsyncConnectionPool[Any],
                                         pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store, actor="alice")
    await UsageWriter(pg_store).many(3)  # usage in between changes nothing in the config
    pos_a = await pg_store.config_head()
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT max(recorded_at) FROM events WHERE position <= %s", (pos_a,))
        row = await cur.fetchone()
        assert row is not None
        time_a = row[0]
    await execute(pg_store, RevokeKey("key-k3"), actor="bob")
    await execute(pg_store, SetPricing("gpt-4o", 3.0, 12.0), actor="bob")
    anthropic = AddProvider("anthropic", "anthropic", "http://a.test", "enc:c2VjcmV0", ("claude",))
    await execute(pg_store, anthropic, actor="carol")

    then = cli_json(database_url, "config", "show", "--at", str(pos_a))
    assert then["position"] == pos_a
    assert [p["name"] for p in then["providers"]] == ["openai"]
    assert then["providers"][0]["api_key"] == "env:OPENAI_KEY"
    assert [(k["name"], k["revoked"]) for k in then["keys"]] == [("key-k1", False), ("key-k2", False),
                                                                 ("key-k3", False)]
    assert then["keys"][0]["team"] == "research" and then["keys"][1]["budget"] == {"amount_usd": 5.0,
                                                                                   "period": "1d"}
    assert then["pricing"] == [{"model": "gpt-4o", "input_per_1m": 2.5, "output_per_1m": 10.0}]
    by_time = cli_json(database_url, "config", "show", "--at", time_a.isoformat())
    assert {**by_time, "at": None} == {**then, "at": None}

    now = run_cli(database_url, "config", "show")
    assert now.returncode == 0, now.stderr
    assert "anthropic" in now.stdout and "encrypted" in now.stdout
    for secret in ("hash-k1", "c2VjcmV0", "key_hash"):  # hashes and ciphertexts never printed
        assert secret not in now.stdout and secret not in str(then)

    d = cli_json(database_url, "config", "diff", str(pos_a), time_a.replace(year=2100).isoformat())
    assert d["from"]["position"] == pos_a and d["events"] == 3
    changes = {(c["kind"], c["name"]): c for c in d["changes"]}
    assert set(changes) == {("provider", "anthropic"), ("pricing", "gpt-4o"), ("key", "key-k3")}
    assert changes[("provider", "anthropic")]["change"] == "added"
    assert changes[("provider", "anthropic")]["events"][0]["actor"] == "carol"
    revoked = changes[("key", "key-k3")]
    assert revoked["fields"] == {"revoked": {"from": False, "to": True}}
    assert [(e["type"], e["actor"]) for e in revoked["events"]] == [("virtual_key.revoked", "bob")]
    assert changes[("pricing", "gpt-4o")]["fields"]["input_per_1m"] == {"from": 2.5, "to": 3.0}

    table = run_cli(database_url, "config", "diff", "0", str(pos_a))
    assert table.returncode == 0 and "added" in table.stdout and "by alice" in table.stdout

    for bad in (["show", "--at", "yesterday-ish"], ["diff", str(10**6), str(pos_a)]):
        r = run_cli(database_url, "config", *bad)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "ISO 8601" in run_cli(database_url, "config", "show", "--at", "yesterday-ish").stderr
