"""A node started from a snapshot of either readable format serves the same keys as a full
replay: live keys authenticate, keys revoked before or after the snapshot are refused, and a
revocation folded over the columnar key table takes effect at once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import openai
import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.commands import CreateKey, RevokeKey
from shieldes.projections.keytable import KeyTable
from shieldes.projections.pmap import LayeredMap
from shieldes.projections.shared_commands import AddProvider
from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key
from shieldes.snapshots import codec
from shieldes.snapshots.loader import load_projection
from shieldes.snapshots.store import save_encoded
from tests.fake_upstream import FakeUpstream
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness

ADMIN = "snapshot-node-admin-token-0123456789"


async def _key(store: PostgresEventStore, name: str) -> str:
    secret = new_virtual_key()
    await execute(store, CreateKey(new_id("key"), name, hash_key(secret), display_prefix(secret)), actor="t")
    return secret


async def _status(base: str, secret: str) -> int:
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=secret, max_retries=0)
    try:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        return 200
    except openai.APIStatusError as exc:
        return exc.status_code
    finally:
        await client.close()


@pytest.mark.parametrize("fmt", [2, 3, 4, 5])
async def test_a_node_from_a_snapshot_serves_the_same_keys(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, database_url: str, fmt: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    upstream = FakeUpstream(api_key=UPSTREAM_KEY, models=("gpt-4o",))
    await upstream.start()
    try:
        await execute(pg_store, AddProvider("openai", "openai", upstream.url, "env:" + UPSTREAM_KEY_ENV,
                                            ("gpt-4o",)), actor="t")
        live, revoked_before = await _key(pg_store, "live"), await _key(pg_store, "revoked-before")
        revoked_after = await _key(pg_store, "revoked-after")
        await execute(pg_store, RevokeKey("revoked-before"), actor="t")
        snap = codec.encode(await load_projection(pool), fmt=fmt)
        if fmt < 4:  # an older layout loads when written before usage carried media units
            snap = replace(snap, schema_version="0016")
        elif fmt < 5:  # or, for format 4, hosted tool uses
            snap = replace(snap, schema_version="0023")
        await save_encoded(pool, snap, node_id="t", keep=3)
        await execute(pg_store, RevokeKey("revoked-after"), actor="t")  # the tail
        added_after = await _key(pg_store, "added-after")

        async with harness(database_url, upstream=upstream, providers=False, admin_token=ADMIN) as h:
            config = h.node.projector.config
            assert h.node.projector.position > snap.position
            if fmt >= 3:  # started from the columns, not from a replay
                assert isinstance(config.keys, LayeredMap) and isinstance(config.keys.base, KeyTable)
            assert await _status(h.base, live) == 200
            assert await _status(h.base, added_after) == 200
            assert await _status(h.base, revoked_before) == 401
            assert await _status(h.base, revoked_after) == 401
            # a listing pages through the snapshot's keys and the ones added since, by name
            api, names = AdminClient(h.base, ADMIN), []
            after: dict[str, str] = {}
            while True:
                _, page = await api.get("/admin/v1/keys", status="all", limit=2, **after)
                names += [k["name"] for k in page["data"]]
                if not page["has_more"]:
                    break
                after = {"after": page["next_after"]}
            assert names == ["added-after", "live", "revoked-after", "revoked-before"]
            _, revoked = await api.get("/admin/v1/keys", status="revoked", search="BEFORE")
            assert [k["name"] for k in revoked["data"]] == ["revoked-before"]
            await execute(pg_store, RevokeKey("live"), actor="t")
            await h.sync()
            assert await _status(h.base, live) == 401
            assert await _status(h.base, added_after) == 200
    finally:
        await upstream.stop()
