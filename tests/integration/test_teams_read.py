"""`team list` and `budget show --team` in direct mode read the newest snapshot's teams part plus
the config events after it (never the keys); the answer is the whole config's. A snapshot without
a usable teams part (none written, another secret) means the whole config is read, as before."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute, load_config
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.commands import CreateKey, CreateTeam, RevokeKey, SetBudget, UpdateKey
from shieldes.snapshots import codec
from shieldes.snapshots.store import save_snapshot
from shieldes.snapshots.teams_start import load_teams, teams_from_snapshot
from tests.cli import ok
from tests.integration.usage_log import full_replay, seed_config

SECRET = "cluster-secret-for-tests"
ENV = {"SHIELDES_CLUSTER_SECRET": SECRET}


async def listed(database_url: str, env: dict[str, str] | None = None) -> dict[str, tuple[Any, ...]]:
    rows = await asyncio.to_thread(ok, database_url, "team", "list", env=ENV if env is None else env)
    return {r["name"]: (r["keys"], r["budget_usd"], r["budget_period"]) for r in rows}


async def test_team_list_reads_the_teams_part_and_the_tail(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, database_url: str
) -> None:
    await seed_config(pg_store)  # team research: key k1; keys k2, k3 in no team
    await execute(pg_store, CreateTeam("t2", "infra"), actor="admin")
    await execute(pg_store, UpdateKey("key-k2", team="infra"), actor="admin")
    snap = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5, key=codec.mac_key(SECRET))
    assert snap.position > 0
    # after the snapshot: a key of research moved, one of infra revoked, a team made and budgeted
    await execute(pg_store, UpdateKey("key-k1", team="infra"), actor="admin")
    await execute(pg_store, RevokeKey("key-k2"), actor="admin")
    await execute(pg_store, CreateTeam("t3", "ops", 9.0, "1d"), actor="admin")
    await execute(pg_store, CreateKey("k9", "key-k9", "hash-k9", "sk-shd-k9", team="ops"), actor="admin")
    await execute(pg_store, SetBudget("team", "research", 12.5, "30d"), actor="admin")

    base = await teams_from_snapshot(pool, codec.mac_key(SECRET))
    assert base is not None and base.position == snap.position
    assert dict(base.state.team_keys) == {"t1": 1, "t2": 1}
    view = await load_teams(pg_store, Codec(), base)
    whole = await load_config(pg_store, Codec())
    assert view.position == whole.position
    assert (dict(view.state.teams), dict(view.state.team_ids_by_name), dict(view.state.team_keys)) == (
        dict(whole.state.teams), dict(whole.state.team_ids_by_name), dict(whole.state.team_keys))

    want = {"research": (0, 12.5, "30d"), "infra": (1, None, None), "ops": (1, 9.0, "1d")}
    assert await listed(database_url) == want
    # the whole state of the snapshot spoiled: `key list` cannot start from it, `team list` never reads it
    async with pool.connection() as conn:
        await conn.execute("UPDATE snapshots SET state = '\\x00'::bytea")
        await conn.execute("UPDATE events SET data = jsonb_set(data, '{name}', '\"edited\"')"
                           " WHERE type = 'team.created' AND data->>'id' = 't2'")
    assert await listed(database_url) == want  # the teams part's name, not the edited log's
    shown = await asyncio.to_thread(ok, database_url, "budget", "show", "--team", "research", env=ENV)
    assert (shown["subject_id"], shown["amount_usd"], shown["period"]) == ("t1", 12.5, "30d")
    # a reader without the snapshots' secret folds the whole config from position 0: the edit shows
    assert set(await listed(database_url, env={})) == {"research", "edited", "ops"}


async def test_without_a_teams_part_the_whole_config_is_read(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, database_url: str
) -> None:
    await seed_config(pg_store)
    await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5, key=codec.mac_key(SECRET))
    async with pool.connection() as conn:  # as a release before migration 0012 writes them
        await conn.execute("UPDATE snapshots SET teams = NULL, teams_checksum = NULL")
    await execute(pg_store, RevokeKey("key-k1"), actor="admin")
    assert await teams_from_snapshot(pool, codec.mac_key(SECRET)) is None
    assert await listed(database_url) == {"research": (0, None, None)}
