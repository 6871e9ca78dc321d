"""Virtual keys as a user moves them, keeping their secrets. LiteLLM's keys and teams: the `GET
/key/list?return_full_object=true` and `GET /team/list` answers in one file, `shieldes config
import` against a real Postgres, then a node serves each key's own secret (LiteLLM stores the
sha256 of a key, as shieldes does), with the source's models, limits, budget and team; a blocked
key does not get in. Bifrost's virtual keys: their `value` (in the file, or `env.VAR`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import openai
import pytest

from shieldes.config_writer import load_config
from shieldes.events.codec import Codec
from tests.integration.gateway_harness import harness
from tests.integration.test_migrate_configs import cli

SECRETS = {"search-app": "sk-Vb3nQx81LmPz0aRt5Kd2Wq", "batch": "sk-Hh7yUe2Rt9Oo1Pa4Ss6Dd",
           "old": "sk-Zz0Xx9Cc8Vv7Bb6Nn5Mm"}


def stored(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()  # what LiteLLM keeps in LiteLLM_VerificationToken.token


def export_file(tmp_path: Path) -> Path:
    doc = {
        "keys": [
            {"token": stored(SECRETS["search-app"]), "key_name": "sk-...5Kd2Wq", "key_alias": "search-app",
             "spend": 1.25, "max_budget": 100.0, "budget_duration": "30d", "models": ["gpt-4o"], "rpm_limit": 600,
             "tpm_limit": 100000, "team_id": "7d1c-team", "expires": None, "blocked": None, "metadata": {},
             "max_parallel_requests": 10},
            {"token": stored(SECRETS["batch"]), "key_name": "sk-...Ss6Dd", "key_alias": "batch", "models": [],
             "max_budget": 5, "expires": "2030-01-01T00:00:00Z"},
            {"token": stored(SECRETS["old"]), "key_name": "sk-...Nn5Mm", "key_alias": "old", "blocked": True}],
        "teams": [{"team_id": "7d1c-team", "team_alias": "search", "max_budget": 500, "budget_duration": "1mo",
                   "models": [], "spend": 3.0}]}
    path = tmp_path / "litellm-keys.json"
    path.write_text(json.dumps(doc))
    return path


async def test_litellm_keys_keep_their_secrets_limits_and_budgets(database_url: str, tmp_path: Path) -> None:
    path = str(export_file(tmp_path))
    async with harness(database_url) as h:
        dry = cli(database_url, "config", "import", path, "--dry-run")
        assert dry.returncode == 0 and "Traceback" not in dry.stderr, dry.stderr
        rows = [line.split(None, 3) for line in dry.stdout.splitlines()]
        assert ["key", "search-app", "add"] in [r[:3] for r in rows], dry.stdout
        assert any(r[:3] == ["key", "search-app", "add"] and r[3].endswith("(its secret kept: sk-...5Kd2Wq)")
                   for r in rows), dry.stdout
        assert ["team", "search", "add", "budget $500/1mo"] in rows, dry.stdout
        assert "spend so far (search-app $1.25) is not carried over" in dry.stderr
        assert "max_parallel_requests not imported" in dry.stderr and "old not created" in dry.stderr
        done = cli(database_url, "--json", "config", "import", path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["summary"]["add"] == 3  # the team and two keys
        again = cli(database_url, "--json", "config", "import", path)
        assert json.loads(again.stdout)["events_appended"] == 0
        await h.sync()

        state = (await load_config(h.store, Codec())).state
        keys = {k.name: k for k in state.keys.values()}
        assert set(keys) == {"search-app", "batch"}
        app, batch = keys["search-app"], keys["batch"]
        assert (app.models, app.rpm, app.tpm, app.prefix) == (("gpt-4o",), 600, 100000, "sk-...5Kd2Wq")
        assert app.budget is not None and (app.budget.amount_usd, app.budget.period) == (100.0, "30d")
        team = state.teams[app.team_id or ""]
        assert team.name == "search" and team.budget is not None and team.budget.period == "1mo"
        assert batch.models is None and batch.budget is not None and batch.budget.period == "366d"
        assert batch.expires_at == 1893456000.0

        for name in ("search-app", "batch"):  # each client keeps the key it has
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=SECRETS[name], max_retries=0)
            answer = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
        app_client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=SECRETS["search-app"], max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):  # its models are the source's
            await app_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        blocked = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=SECRETS["old"], max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await blocked.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


async def test_bifrost_virtual_keys_keep_their_values(database_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    inline, from_env = "sk-bf-4c1d9e2a-0b7f-4e55-9a10-3f2d6c8b1a77", "sk-bf-8a2b7c3d-1e4f-4a66-8b21-5e3f7d9c2b88"
    monkeypatch.setenv("BIFROST_VK_PLATFORM", from_env)
    doc = {"providers": {}, "governance": {
        "rate_limits": [{"id": "rl", "request_max_limit": 300, "request_reset_duration": "1m"}],
        "virtual_keys": [{"id": "vk-1", "name": "app", "value": inline, "rate_limit_id": "rl",
                          "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o"]}]},
                         {"id": "vk-2", "name": "platform", "value": "env.BIFROST_VK_PLATFORM"}]}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    async with harness(database_url) as h:
        done = cli(database_url, "config", "import", str(path))
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert "(its secret kept: sk-bf-4c1d)" in done.stdout and "(its secret kept: sk-bf-8a2b)" in done.stdout
        await h.sync()
        state = (await load_config(h.store, Codec())).state
        assert {k.name: (k.rpm, k.models) for k in state.keys.values()} == {"app": (300, ("gpt-4o",)),
                                                                            "platform": (None, None)}
        for secret in (inline, from_env):  # each client keeps its Bifrost key
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
            answer = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
