"""Rotating SHIELDES_ENCRYPTION_KEY while a node keeps serving (the runbook in docs/deploy.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from openai import AsyncOpenAI

from shieldes.projections.shared_commands import AddProvider, UpdateProvider
from shieldes.secrets import Keyring, key_id_of
from tests.cli import ok as ok_sync
from tests.cli import refused as refused_sync
from tests.cli import sql
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import harness

OLD, NEW = "old passphrase", "base64:" + "A" * 43 + "="
UPSTREAM_KEY = "sk-upstream-rotated"


def config_events(url: str) -> int:
    return int(sql(url, "SELECT count(*) FROM events WHERE stream = 'config'")[0][0])


async def ok(*args: Any, **kw: Any) -> Any:  # the CLI runs its own event loop: off this one
    return await asyncio.to_thread(ok_sync, *args, **kw)


async def refused(*args: Any, **kw: Any) -> str:
    return await asyncio.to_thread(refused_sync, *args, **kw)


async def test_rotation_while_a_node_serves(database_url: str) -> None:
    upstream = FakeUpstream(completion_tokens=3, api_key=UPSTREAM_KEY, models=("gpt-4o",))
    # step 1 of the runbook: nodes run with the new key and the old one
    async with harness(database_url, upstream=upstream, providers=False,
                       encryption_key=NEW, encryption_key_old=OLD) as h:
        await h.admin(AddProvider("openai", "openai", upstream.url, Keyring(OLD).encrypt(UPSTREAM_KEY), ("gpt-4o",)))
        client = AsyncOpenAI(base_url=h.base + "/v1", api_key=await h.create_key("app"), max_retries=0)
        await h.sync()

        async def call() -> None:
            r = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content
            assert upstream.last("/v1/chat/completions").headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

        await call()
        both = {"SHIELDES_ENCRYPTION_KEY": NEW, "SHIELDES_ENCRYPTION_KEY_OLD": OLD}

        # without the old key the rotation is refused whole, appending nothing
        before = config_events(database_url)
        line = await refused(database_url, "secrets", "rotate", env={"SHIELDES_ENCRYPTION_KEY": NEW})
        # which of the stored keys it cannot read, and what to set
        assert line.startswith("error: provider 'openai': ") and "SHIELDES_ENCRYPTION_KEY_OLD" in line, line
        plan = await ok(database_url, "secrets", "rotate", "--dry-run", env=both)
        assert [(r["provider"], r["rotated"]) for r in plan] == [("openai", False)]
        assert config_events(database_url) == before

        # step 2: rotate; the node picks the new ciphertext up live and keeps serving
        done = await ok(database_url, "secrets", "rotate", env=both)
        assert done[0]["to_key_id"] == Keyring(NEW).current_key_id and done[0]["rotated"]
        await h.sync()
        await call()
        ref = sql(database_url, "SELECT data->>'secret_ref' FROM events WHERE type = 'provider.updated'")[-1][0]
        assert key_id_of(ref) == Keyring(NEW).current_key_id
        assert await ok(database_url, "secrets", "status", env={"SHIELDES_ENCRYPTION_KEY": NEW}) == [
            {"provider": "openai", "key_id": Keyring(NEW).current_key_id, "current": True}]
        assert await ok(database_url, "secrets", "rotate", env=both) == []  # idempotent

    # step 3: the old key is retired; a node holding only the new key decrypts the rotated secret
    upstream2 = FakeUpstream(completion_tokens=3, api_key=UPSTREAM_KEY, models=("gpt-4o",))
    async with harness(database_url, upstream=upstream2, providers=False, encryption_key=NEW) as h2:
        await h2.admin(UpdateProvider("openai", base_url=upstream2.url))  # same rotated secret_ref
        client = AsyncOpenAI(base_url=h2.base + "/v1", api_key=await h2.create_key("app2"), max_retries=0)
        await h2.sync()
        r = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert r.choices[0].message.content
        assert upstream2.last("/v1/chat/completions").headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
