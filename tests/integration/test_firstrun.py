"""First-run and everyday dead ends: a provider key missing on the node answers 502 once (never
retried, logged once, other deployments still tried), an empty gateway says how to add a provider,
and `shieldes doctor` reports each failure with what to do."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests import cli
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness

MISSING = "SHIELDES_TEST_SURELY_UNSET_KEY"
OWN_KEY_ENV = "SHIELDES_OWN_OPENAI_KEY"  # an operator's own name, not a setting


async def test_missing_provider_key_is_a_config_error_answered_once(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with harness(database_url, providers=False) as h:
        await h.admin(AddProvider("broken", "openai", h.upstream.url, "env:" + MISSING, ("gpt-4o",)))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=f"{h.base}/v1", api_key=secret, max_retries=0)
        caplog.set_level(logging.ERROR, logger="shieldes.gateway.upstream_attempt")
        for _ in range(2):
            with pytest.raises(openai.APIStatusError) as err:
                await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert err.value.status_code == 502
            body: Any = err.value.body
            assert body["code"] == "provider_misconfigured"
            assert MISSING in body["message"] and "retry later" not in body["message"]
            assert "attempt" not in body["message"]
        assert h.upstream.requests_to("/v1/chat/completions") == []  # nothing sent, nothing retried
        # once from the request path (the startup check logs it once more, from shieldes.config)
        loud = [r for r in caplog.records
                if MISSING in r.getMessage() and r.name == "shieldes.gateway.upstream_attempt"]
        assert len(loud) == 1 and loud[0].levelno == logging.ERROR  # once, however many requests

        # two deployments of the model, both unusable here: the answer names each one's reason
        await h.admin(AddProvider("broken2", "openai", h.upstream.url, "env:" + MISSING + "_2", ("gpt-4o",)))
        await h.sync()
        with pytest.raises(openai.APIStatusError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        body = err.value.body
        assert err.value.status_code == 502 and body["code"] == "provider_misconfigured"
        assert "'broken'" in body["message"] and "'broken2'" in body["message"] and MISSING + "_2" in body["message"]
        # another deployment serving the model still takes the request
        await h.admin(AddProvider("good", "openai", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-4o",)))
        await h.sync()
        for _ in range(4):  # whichever the weighted order tries first
            done = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert done.choices[0].message.content


async def test_a_node_names_each_unknown_setting_once_at_start(
        database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIELDES_GOSIP_INTERVAL", "0.2")
    monkeypatch.setenv("SHIELDES_WHOLLY_UNRELATED_THING", "1")
    monkeypatch.setenv("SHIELDES_TEST_SURELY_UNSET_KEY", "a name the project uses: no warning")
    caplog.set_level(logging.WARNING, logger="shieldes.node")
    async with harness(database_url, providers=False):
        pass
    lines = [r.getMessage() for r in caplog.records if r.name == "shieldes.node" and "no shieldes setting" in
             r.getMessage()]
    assert lines == [
        "MISSING: SHIELDES_GOSIP_INTERVAL is set but is no shieldes setting: it is ignored; did you mean "
        "SHIELDES_GOSSIP_INTERVAL?",
        "MISSING: SHIELDES_WHOLLY_UNRELATED_THING is set but is no shieldes setting: it is ignored; see "
        "docs/configuration.md for the settings"]


async def test_no_providers_yet_says_how_to_add_one(database_url: str) -> None:
    async with harness(database_url, providers=False) as h:
        secret = await h.create_key("first")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=f"{h.base}/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.NotFoundError) as err:
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert "no providers yet" in str(err.value) and "shieldes provider add" in str(err.value)


def _doctor(database_url: str, **env: str) -> tuple[int, dict[str, Any], str]:
    result = cli.invoke(database_url, "doctor", "--json", env=env)
    return result.exit_code, json.loads(result.stdout), result.stderr


def _failed(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["check"], c["subject"]): c for c in report["checks"] if not c["ok"]}


async def test_doctor_passes_a_healthy_setup_and_names_each_failure(database_url: str) -> None:
    async with FakeUpstream(api_key=UPSTREAM_KEY) as up:
        env = {UPSTREAM_KEY_ENV: UPSTREAM_KEY, OWN_KEY_ENV: UPSTREAM_KEY}
        await asyncio.to_thread(cli.ok, database_url, "provider", "add", "openai", "--type", "openai",
                                "--base-url", up.url, "--api-key-env", UPSTREAM_KEY_ENV, "--models", "gpt-4o-mini")
        # an operator's own variable a provider names by `env:` is no unknown setting, whatever its prefix
        await asyncio.to_thread(cli.ok, database_url, "provider", "add", "own", "--type", "openai",
                                "--base-url", up.url, "--api-key-env", OWN_KEY_ENV, "--models", "gpt-4o-mini")
        # a misspelt setting is a warning, which fails nothing
        code, report, err = await asyncio.to_thread(_doctor, database_url, **env, SHIELDES_GOSIP_INTERVAL="0.2")
        assert code == 0 and report["ok"], report
        assert [c for c in report["checks"] if c.get("warning")] == [{
            "check": "settings", "subject": "SHIELDES_GOSIP_INTERVAL", "ok": True, "warning": True,
            "detail": "SHIELDES_GOSIP_INTERVAL is set but is no shieldes setting: it is ignored; did you mean "
                      "SHIELDES_GOSSIP_INTERVAL?", "fix": "rename it to SHIELDES_GOSSIP_INTERVAL"}]
        assert {c["check"] for c in report["checks"]} >= {"database", "schema", "clock", "credentials",
                                                            "upstream", "prices", "cluster"}
        assert up.requests_to("/v1/models")[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

        # a key missing here, a refused key, an unreachable upstream, an unpriced model
        await asyncio.to_thread(cli.ok, database_url, "provider", "add", "nokey", "--type", "openai",
                                "--base-url", up.url, "--api-key-env", MISSING, "--models", "gpt-4o-mini")
        await asyncio.to_thread(cli.ok, database_url, "provider", "add", "gone", "--type", "anthropic",
                                "--base-url", "http://127.0.0.1:9", "--api-key-env", UPSTREAM_KEY_ENV,
                                "--models", "house-model")
        code, report, err = await asyncio.to_thread(_doctor, database_url, **env)
    assert code == 1 and not report["ok"]
    assert [json.loads(line) for line in err.strip().splitlines()] == [  # --json: the error line is JSON
        {"error": {"message": f"{report['failed']} check(s) failed; see above for what to do",
                   "code": "checks_failed"}}]
    failed = _failed(report)
    assert MISSING in failed[("credentials", "nokey")]["fix"]
    # the fake refused the request that carried no key (401): the key is missing here, not wrong
    assert "cannot read" in failed[("upstream", "nokey")]["detail"]
    assert "credentials check" in failed[("upstream", "nokey")]["fix"]
    assert "cannot reach" in failed[("upstream", "gone")]["detail"]
    assert failed[("prices", "house-model")]["fix"].startswith("shieldes pricing set house-model")
    assert "403 model_not_priced" in failed[("prices", "house-model")]["detail"]  # budgets fail closed
    assert ("credentials", "openai") not in failed and ("upstream", "openai") not in failed


async def test_doctor_says_key_accepted_only_when_it_sent_one(database_url: str) -> None:
    """An upstream that answers without auth (a local vLLM) says nothing about a key the probe did
    not send: one this machine cannot read is not "accepted", and a provider with none is "without a
    key". With SHIELDES_ALLOW_UNPRICED an unpriced model is served to budgeted keys: said so."""
    async with FakeUpstream() as open_up:  # answers any request, key or not
        for name, key in (("unread", ["--api-key-env", MISSING]), ("keyless", [])):
            await asyncio.to_thread(cli.ok, database_url, "provider", "add", name, "--type", "openai",
                                    "--base-url", open_up.url, *key, "--models", "house-model")
        code, report, _ = await asyncio.to_thread(_doctor, database_url, SHIELDES_ALLOW_UNPRICED="true")
    checks = {(c["check"], c["subject"]): c for c in report["checks"]}
    assert code == 1 and not checks[("credentials", "unread")]["ok"]
    unread, keyless = checks[("upstream", "unread")], checks[("upstream", "keyless")]
    assert unread["ok"] and "accepted" not in unread["detail"] and "cannot read" in unread["detail"], unread
    assert keyless["ok"] and keyless["detail"] == "reachable without a key (none configured)", keyless
    price = checks[("prices", "house-model")]
    assert not price["ok"] and "SHIELDES_ALLOW_UNPRICED" in price["detail"] and "without limit" in price["detail"]


def test_doctor_compares_the_secrets_nodes_publish(database_url: str) -> None:
    def node(name: str, cluster_fp: str | None) -> None:
        cli.sql(database_url,
                "INSERT INTO cluster_nodes (node_id, version, boot_epoch, started_at, heartbeat_at, position, info)"
                " VALUES (%s, 'x', 1, now(), now(), 0, %s)",
                (name, json.dumps({"secrets": {"cluster": cluster_fp, "cluster_generated": False,
                                               "encryption": None}})))

    node("a", "1111")
    node("b", "2222")
    code, report, _ = _doctor(database_url)
    assert code == 1
    assert "nodes disagree" in _failed(report)[("cluster", "SHIELDES_CLUSTER_SECRET")]["detail"]


def test_doctor_with_the_database_down_is_one_report() -> None:
    code, report, err = _doctor("postgresql://nobody@127.0.0.1:9/none")
    assert code == 1 and report["checks"][0]["check"] == "database" and report["checks"][0]["fix"]
    assert len(err.strip().splitlines()) == 1
