"""Time travel: `shieldes config show --at` and `shieldes config diff` over the config stream."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.commands import RevokeKey
from shieldes.projections.shared_commands import AddProvider, SetModelAlias, SetPricing, SetRouting, UpdateProvider
from shieldes.projections.state import AliasTarget
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


async def test_diff_and_show_cover_provider_settings_aliases_and_routing(database_url: str,
                                                                         pg_store: PostgresEventStore) -> None:
    """A provider's responses mode and type settings (its quotas, region), model aliases and
    routing strategies are config too: a diff that counted their events showed no entity changed,
    and `config show` left them out."""
    await seed_config(pg_store, actor="alice")
    await execute(pg_store, SetModelAlias("fast", (AliasTarget("openai", "gpt-4o"),)), actor="alice")
    before = await pg_store.config_head()
    await execute(pg_store, UpdateProvider("openai", responses="native", options={"rpm": "100", "region": "eu"}),
                  actor="bob")
    await execute(pg_store, SetModelAlias("fast", (AliasTarget("openai", "gpt-4o", 2.0),), ("gpt-4o",)), actor="bob")
    await execute(pg_store, SetRouting("fast", "cost"), actor="carol")

    d = cli_json(database_url, "config", "diff", str(before), str(await pg_store.config_head()))
    assert d["events"] == 3
    changes = {(c["kind"], c["name"]): c for c in d["changes"]}
    assert set(changes) == {("provider", "openai"), ("alias", "fast"), ("routing", "fast")}
    assert changes[("provider", "openai")]["fields"] == {
        "options": {"from": {}, "to": {"rpm": "100", "region": "eu"}},
        "responses": {"from": "translate", "to": "native"}}
    assert changes[("alias", "fast")]["fields"] == {"targets": {"from": ["openai/gpt-4o:1"], "to": ["openai/gpt-4o:2"]},
                                                    "fallbacks": {"from": [], "to": ["gpt-4o"]}}
    assert changes[("routing", "fast")]["change"] == "added"
    assert [e["actor"] for e in changes[("routing", "fast")]["events"]] == ["carol"]

    now = cli_json(database_url, "config", "show")
    assert now["aliases"] == [{"name": "fast", "targets": ["openai/gpt-4o:2"], "fallbacks": ["gpt-4o"]}]
    assert now["routing"] == [{"model": "fast", "strategy": "cost"}]
    assert now["providers"][0]["options"] == {"region": "eu", "rpm": "100"}
    table = run_cli(database_url, "config", "diff", str(before), str(await pg_store.config_head()))
    assert table.returncode == 0 and "responses: translate -> native" in table.stdout, table.stdout
    assert "options: - -> " in table.stdout and "rpm=100" in table.stdout  # a mapping as the tables print it
