"""`shieldes config export` fed back to `shieldes config import` (config as code), as a user runs
them (in pytest's process, tests/cli.py) against real Postgres, a staging database exported and a
production one imported into."""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import pg
from tests.integration.test_config_io_cli import config_events, shieldes


@pytest.fixture
def prod_url(pg_server: str) -> Iterator[str]:
    """A second fresh database: the one the staging export is imported into."""
    url = pg.fresh_database(pg_server)
    yield url
    pg.drop_database(pg_server, url)


def ok(url: str, *args: str, **env: str) -> str:
    done = shieldes(url, *args, **env)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def export(url: str, path: Path | None = None) -> dict[str, Any]:
    if path is None:
        return dict(json.loads(ok(url, "config", "export")))
    ok(url, "config", "export", "-o", str(path))
    return dict(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def staged(pg_server: str) -> Iterator[str]:
    """A database `staging` wrote through the CLI, once for the module: the tests get copies of it
    (staged_url, staged_prod_url), each a database of its own."""
    with pg.seeded(pg_server, staging) as url:
        yield url


@pytest.fixture
def staged_url(pg_server: str, staged: str) -> Iterator[str]:
    with pg.copied(pg_server, staged) as url:
        yield url


@pytest.fixture
def staged_prod_url(pg_server: str, staged: str) -> Iterator[str]:
    """A second copy of the staged database, for a test that edits two staged databases two ways."""
    with pg.copied(pg_server, staged) as url:
        yield url


def staging(url: str) -> None:
    """A config using every section of the export: provider types with settings, a pattern, an
    alias with weights and fallbacks, prices (a pattern, cache prices), a routing strategy, teams
    with and without a budget, a key with limits and one revoked."""
    ok(url, "provider", "add", "openai", "--type", "openai", "--base-url", "https://api.openai.com/v1",
       "--api-key-env", "OPENAI_API_KEY", "--models", "gpt-4o,gpt-4o-mini", "--weight", "2", "--responses", "native",
       "--rpm", "5000")
    ok(url, "provider", "add", "anthropic", "--type", "anthropic", "--base-url", "https://api.anthropic.com",
       "--api-key-env", "ANTHROPIC_API_KEY", "--models", "claude-*")
    ok(url, "provider", "add", "azure-eu", "--type", "azure", "--base-url", "https://eu.openai.azure.com",
       "--api-key-env", "AZURE_EU_KEY", "--api-version", "2024-10-21", "--models", "prod-4o")
    ok(url, "provider", "add", "bedrock", "--type", "bedrock", "--region", "eu-west-1",
       "--models", "anthropic.claude-3-5-sonnet-20240620-v1:0")
    ok(url, "model", "alias", "smart", "--target", "openai/gpt-4o:3", "--target", "azure-eu/prod-4o",
       "--fallback", "claude-sonnet-4")
    ok(url, "pricing", "set", "claude-*", "--input", "3", "--output", "15", "--cache-read", "0.3",
       "--cache-write", "3.75")
    ok(url, "pricing", "set", "gpt-4o", "--input", "2.5", "--output", "10")  # the shipped price: still listed
    ok(url, "routing", "set", "smart", "--strategy", "least-latency")
    ok(url, "team", "create", "ml", "--budget", "100", "--budget-period", "1mo")
    ok(url, "team", "create", "web")
    ok(url, "key", "create", "--name", "app", "--models", "gpt-4o,smart", "--rpm", "600", "--tpm", "100000",
       "--budget", "50", "--budget-period", "30d", "--team", "ml", "--expires-at", "2031-01-01T00:00:00Z")
    ok(url, "key", "create", "--name", "old")
    ok(url, "key", "revoke", "old")


def test_export_imports_into_an_empty_database_and_exports_the_same(staged_url: str, prod_url: str,
                                                                     tmp_path: Path) -> None:
    source = export(staged_url, tmp_path / "shieldes.json")
    assert (source["format"], source["version"]) == ("shieldes", 2)

    dry = json.loads(ok(prod_url, "--json", "config", "import", str(tmp_path / "shieldes.json"), "--dry-run"))
    assert dry["format"] == "shieldes" and dry["dry_run"] and dry["events_appended"] == 0
    # 4 providers, 1 alias, 2 prices, 1 routing strategy, 2 teams; the live key cannot be made without
    # a secret: reported with the command that makes it; the revoked one is not made again
    assert dry["summary"] == {"add": 10, "update": 0, "unchanged": 0, "missing": 1}
    missing = [c for c in dry["changes"] if c["action"] == "missing"]
    assert [(c["kind"], c["name"]) for c in missing] == [("key", "app")]
    assert any("1 revoked key(s)" in n for n in dry["notes"])
    assert config_events(prod_url) == 0

    done = shieldes(prod_url, "config", "import", str(tmp_path / "shieldes.json"))
    assert done.returncode == 0, done.stderr
    assert "shieldes: did add 10, update 0, leave 0 unchanged; 1 key(s) missing" in done.stdout
    assert "shieldes key create --name app" in done.stdout

    # everything comes back as it was; team ids carry over (they were free), keys do not (no secret)
    again = export(prod_url)
    assert again == {**source, "keys": []}

    # the command printed makes the key as it was: same settings, a new id, prefix and secret
    command = shlex.split(missing[0]["detail"].removeprefix("create it: "))
    assert command[:3] == ["shieldes", "key", "create"]
    ok(prod_url, *command[1:])
    keys = export(prod_url)["keys"]
    live = [k for k in source["keys"] if not k["revoked"]]

    def settings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{f: v for f, v in k.items() if f not in ("id", "prefix")} for k in rows]

    assert settings(keys) == settings(live) and keys[0]["id"] != live[0]["id"]

    # and the file now imports as nothing to change: the key is found by name
    before = config_events(prod_url)
    second = json.loads(ok(prod_url, "--json", "config", "import", str(tmp_path / "shieldes.json")))
    assert second["summary"] == {"add": 0, "update": 0, "unchanged": 11}
    assert second["events_appended"] == 0 and config_events(prod_url) == before


def test_dry_run_shows_an_edit_import_applies_it_and_a_second_import_changes_nothing(staged_url: str,
                                                                                      tmp_path: Path) -> None:
    path = tmp_path / "shieldes.json"
    doc = export(staged_url, path)
    before = config_events(staged_url)
    same = shieldes(staged_url, "config", "import", str(path), "--dry-run")
    assert same.returncode == 0, same.stderr
    assert "shieldes: would add 0, update 0, leave 12 unchanged (dry run: nothing written)" in same.stdout

    edited = copy.deepcopy(doc)
    edited["providers"][[p["name"] for p in edited["providers"]].index("openai")]["weight"] = 3
    edited["routing"][0]["strategy"] = "cost"
    edited["teams"][[t["name"] for t in edited["teams"]].index("web")]["budget"] = {"amount_usd": 20,
                                                                                     "period": "1d"}
    app = next(k for k in edited["keys"] if k["name"] == "app")
    app.update(rpm=900, team="web", budget=None)
    edited["pricing"].append({"model": "gpt-4o-mini", "input_per_1m": 0.2, "output_per_1m": 0.8})
    edited["teams"].append({"id": None, "name": "ops", "budget": None})
    path.write_text(json.dumps(edited))

    dry = json.loads(ok(staged_url, "--json", "config", "import", str(path), "--dry-run"))
    changed = {(c["kind"], c["name"]): (c["action"], c["detail"]) for c in dry["changes"]
               if c["action"] != "unchanged"}
    assert changed == {
        ("provider", "openai"): ("update", "weight 2 -> 3"),
        ("routing", "smart"): ("update", "cost (was least-latency)"),
        ("team", "web"): ("update", "budget $20/1d (was none)"),
        ("team", "ops"): ("add", "no budget"),
        ("key", "app"): ("update", "team ml -> web; rpm 600 -> 900; budget $50/30d -> none"),
        ("pricing", "gpt-4o-mini"): ("add", "input $0.2/1M, output $0.8/1M"),
    }
    assert config_events(staged_url) == before

    ok(staged_url, "config", "import", str(path))
    after = export(staged_url)
    ops = next(t for t in after["teams"] if t["name"] == "ops")
    assert ops["id"].startswith("team_")  # no id in the file: a new one
    assert after == {**edited, "teams": sorted([*edited["teams"][:-1], ops], key=lambda t: t["name"]),
                     "pricing": sorted(edited["pricing"], key=lambda p: p["model"])}

    written = config_events(staged_url)
    again = json.loads(ok(staged_url, "--json", "config", "import", str(path), "--dry-run"))
    assert again["summary"] == {"add": 0, "update": 0, "unchanged": 14}
    assert json.loads(ok(staged_url, "--json", "config", "import", str(path)))["events_appended"] == 0
    assert config_events(staged_url) == written


def _refused(url: str, path: Path, doc: Any, *args: str, **env: str) -> str:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    result = shieldes(url, "config", "import", str(path), *args, **env)
    assert result.returncode == 1, (doc, result.stdout)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_a_file_that_cannot_be_read_as_this_version_is_refused_saying_what_to_do(database_url: str,
                                                                                  tmp_path: Path) -> None:
    ok(database_url, "provider", "add", "openai", "--type", "openai", "--base-url", "https://api.openai.com/v1",
       "--api-key-env", "OPENAI_API_KEY", "--models", "gpt-4o")
    good = export(database_url)
    before = config_events(database_url)
    path = tmp_path / "shieldes.json"

    newer = _refused(database_url, path, {**good, "version": 3})
    assert "written by a newer shieldes (export format version 3; this one reads up to 2)" in newer
    assert "upgrade shieldes" in newer
    unknown = _refused(database_url, path, {**good, "version": "one"})
    assert "unknown shieldes export version 'one'" in unknown and "shieldes config export" in unknown
    typo = copy.deepcopy(good)
    typo["providers"][0]["wieght"] = 2
    assert "providers[0] has unknown field(s) wieght" in _refused(database_url, path, typo)
    assert "unknown section(s) 'provider'" in _refused(database_url, path, {**good, "provider": []})
    assert '"aliases" must be a list' in _refused(database_url, path, {**good, "aliases": {}})
    bad_type = copy.deepcopy(good)
    bad_type["providers"][0]["type"] = "cohere"
    assert "providers[0] ('openai').type 'cohere' is not a shieldes provider type" in _refused(
        database_url, path, bad_type)
    assert "not valid JSON" in _refused(database_url, path, '{"format": "shieldes", ')

    # a key the export left out (it was encrypted) cannot be created from the file
    secret = copy.deepcopy(good)
    secret["providers"].append({**secret["providers"][0], "name": "vault", "api_key": "encrypted"})
    refused = _refused(database_url, path, secret)
    assert "provider 'vault' had an encrypted key" in refused and '"api_key": "env:VAR"' in refused

    # read as another format, it says which format it is
    for fmt in ("bifrost", "litellm"):
        assert "import it with --format shieldes" in _refused(database_url, path, good, "--format", fmt)
    # as every import, it writes Postgres directly: not through a node's admin API
    remote = _refused(database_url, path, good, SHIELDES_ADMIN_URL="http://127.0.0.1:9")
    assert "does not run through the admin API" in remote
    assert config_events(database_url) == before


def test_an_encrypted_key_stays_where_it_is_and_a_file_without_version_reads_as_version_1(
        database_url: str, tmp_path: Path) -> None:
    env = {"SHIELDES_ENCRYPTION_KEY": "passphrase"}
    ok(database_url, "provider", "add", "vault", "--type", "openai", "--base-url", "https://llm.internal/v1",
       "--api-key", "sk-secret-value", "--models", "gpt-4o", **env)
    path = tmp_path / "shieldes.json"
    done = shieldes(database_url, "config", "export", "-o", str(path), **env)
    assert done.returncode == 0 and "provider 'vault' has an encrypted key" in done.stderr
    doc = json.loads(path.read_text())
    assert doc["providers"][0]["api_key"] == "encrypted" and "sk-secret" not in path.read_text()
    before = config_events(database_url)
    # written before exports carried a version: the same lists, read as version 1
    del doc["format"], doc["version"], doc["routing"]
    path.write_text(json.dumps(doc))
    again = json.loads(ok(database_url, "--json", "config", "import", str(path), **env))
    assert again["format"] == "shieldes" and again["summary"] == {"add": 0, "update": 0, "unchanged": 1}
    assert config_events(database_url) == before


def _last_config_events(url: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT type, data FROM events WHERE stream = 'config' ORDER BY position DESC LIMIT %s",
                            (n,)).fetchall()
    return [(t, d) for t, d in reversed(rows)]


def test_an_edited_provider_is_updated_as_provider_update_would_and_a_type_change_is_refused(
        staged_url: str, staged_prod_url: str, tmp_path: Path) -> None:
    path = tmp_path / "shieldes.json"
    doc = export(staged_url, path)
    providers = {p["name"]: p for p in doc["providers"]}
    providers["openai"].update(base_url="https://proxy.internal/v1", models=["gpt-4o"],  # gpt-4o-mini left out
                               options={"rpm": "6000"})
    providers["azure-eu"]["options"] = {"api_version": "2025-01-01"}
    providers["anthropic"]["api_key"] = "env:ANTHROPIC_KEY_2"
    path.write_text(json.dumps(doc))
    before = config_events(staged_url)

    dry = shieldes(staged_url, "config", "import", str(path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "https://api.openai.com/v1 -> https://proxy.internal/v1; rpm 5000 -> 6000" in dry.stdout
    assert "api_version 2024-10-21 -> 2025-01-01" in dry.stdout and "key env:ANTHROPIC_API_KEY -> env:ANTHROPIC_KEY_2" \
        in dry.stdout
    assert "shieldes: would add 0, update 3, leave 9 unchanged (dry run: nothing written)" in dry.stdout
    assert "provider 'openai' also serves gpt-4o-mini" in dry.stderr  # kept: an import removes nothing
    assert config_events(staged_url) == before

    done = json.loads(ok(staged_url, "--json", "config", "import", str(path)))
    assert done["summary"]["update"] == 3 and done["events_appended"] == 3
    after = {p["name"]: p for p in export(staged_url)["providers"]}
    assert after["openai"] == {**providers["openai"], "models": ["gpt-4o", "gpt-4o-mini"]}
    assert after["azure-eu"] == providers["azure-eu"] and after["anthropic"] == providers["anthropic"]
    imported = _last_config_events(staged_url, 3)

    # the same events `provider update` appends for the same changes, each in the audit log
    ok(staged_prod_url, "provider", "update", "anthropic", "--api-key-env", "ANTHROPIC_KEY_2")
    ok(staged_prod_url, "provider", "update", "azure-eu", "--api-version", "2025-01-01")
    ok(staged_prod_url, "provider", "update", "openai", "--base-url", "https://proxy.internal/v1", "--rpm", "6000")
    assert sorted(imported, key=lambda e: e[1]["name"]) == _last_config_events(staged_prod_url, 3)
    with psycopg.connect(staged_url) as conn:
        audited = conn.execute("SELECT actor, subject FROM audit_log WHERE type = 'provider.updated' "
                               "ORDER BY position").fetchall()
    assert sorted(s for _, s in audited) == ["anthropic", "azure-eu", "openai"]
    assert all(a.endswith(":config-import") for a, _ in audited)

    # a second import changes nothing
    written = config_events(staged_url)
    again = json.loads(ok(staged_url, "--json", "config", "import", str(path)))
    assert again["summary"] == {"add": 0, "update": 0, "unchanged": 12} and again["events_appended"] == 0
    assert config_events(staged_url) == written

    # a type change is refused, saying what to do, and nothing is written
    retyped = copy.deepcopy(doc)
    next(p for p in retyped["providers"] if p["name"] == "anthropic")["type"] = "openai"
    refused = _refused(staged_url, path, retyped)
    assert "makes provider 'anthropic' type openai, but it exists here with type anthropic" in refused
    assert "`shieldes provider remove anthropic`" in refused
    assert config_events(staged_url) == written


def test_a_per_image_price_goes_through_export_and_import(database_url: str, prod_url: str, tmp_path: Path) -> None:
    ok(database_url, "pricing", "set", "dall-e-3-eu", "--input", "0", "--output", "0", "--per-image", "0.05")
    source = export(database_url, tmp_path / "shieldes.json")
    assert source["pricing"] == [{"model": "dall-e-3-eu", "input_per_1m": 0.0, "output_per_1m": 0.0,
                                  "per_image": 0.05}]
    done = shieldes(prod_url, "config", "import", str(tmp_path / "shieldes.json"))
    assert done.returncode == 0, done.stderr
    assert "$0.05 per image" in done.stdout
    assert export(prod_url) == source
    again = shieldes(prod_url, "config", "import", str(tmp_path / "shieldes.json"))
    assert "add 0, update 0, leave 1 unchanged" in again.stdout


async def test_mcp_servers_and_keys_mcp_access_move_to_a_fresh_database_and_work_there(
        database_url: str, prod_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exported from one database, imported into a fresh one: the servers answer through /mcp/NAME on
    a node of the new database, and the key made with the printed command keeps its access."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp.shared.exceptions import MCPError

    from tests.fake_mcp import TOKEN, running_mcp_server
    from tests.integration.gateway_harness import harness

    env = {"SHIELDES_ENCRYPTION_KEY": "staging-passphrase"}
    path = tmp_path / "shieldes.json"
    with running_mcp_server() as (url, seen):
        ok(database_url, "mcp", "add", "tools", "--url", url, "--header", f"Authorization: Bearer {TOKEN}", **env)
        ok(database_url, "mcp", "add", "other", "--url", url, "--header-env", "Authorization: OTHER_MCP_TOKEN")
        ok(database_url, "key", "create", "--name", "agent", "--mcp", "tools/add,other")
        done = shieldes(database_url, "config", "export", "-o", str(path), **env)
        assert done.returncode == 0, done.stderr
        assert "MCP server 'tools' has an encrypted header 'Authorization'" in done.stderr
        doc = json.loads(path.read_text())
        assert doc["version"] == 2 and TOKEN not in path.read_text()
        assert doc["mcp_servers"] == [
            {"name": "other", "url": url, "headers": {"Authorization": "env:OTHER_MCP_TOKEN"}},
            {"name": "tools", "url": url, "headers": {"Authorization": "encrypted"}}]
        assert [k["mcp"] for k in doc["keys"]] == [["tools/add", "other"]]

        # the same database: nothing to change, the encrypted value stays where it is
        same = json.loads(ok(database_url, "--json", "config", "import", str(path), **env))
        assert same["summary"] == {"add": 0, "update": 0, "unchanged": 3} and same["events_appended"] == 0

        # a fresh database cannot get the encrypted value from the file: refused, saying what to write
        before = config_events(prod_url)
        refused = _refused(prod_url, path, doc)
        assert "mcp_servers[1] ('tools') header 'Authorization' had an encrypted value" in refused
        assert '"env:VAR"' in refused and config_events(prod_url) == before
        doc["mcp_servers"][1]["headers"]["Authorization"] = "env:TOOLS_MCP_TOKEN"
        path.write_text(json.dumps(doc))

        dry = json.loads(ok(prod_url, "--json", "config", "import", str(path), "--dry-run"))
        assert [(c["kind"], c["name"], c["action"]) for c in dry["changes"]] == [
            ("mcp_server", "other", "add"), ("mcp_server", "tools", "add"), ("key", "agent", "missing")]
        assert config_events(prod_url) == before
        done = shieldes(prod_url, "config", "import", str(path))
        assert done.returncode == 0, done.stderr
        assert "shieldes: did add 2, update 0, leave 0 unchanged; 1 key(s) missing" in done.stdout
        [command] = [c["detail"] for c in dry["changes"] if c["action"] == "missing"]
        assert command.endswith("--mcp tools/add,other")
        key = json.loads(ok(prod_url, "--json", *shlex.split(command.removeprefix("create it: "))[1:]))["key"]
        assert export(prod_url) == {**doc, "keys": [{**doc["keys"][0], "id": export(prod_url)["keys"][0]["id"],
                                                     "prefix": key[:11]}]}
        again = json.loads(ok(prod_url, "--json", "config", "import", str(path)))
        assert again["summary"] == {"add": 0, "update": 0, "unchanged": 3} and again["events_appended"] == 0

        # a node of the new database serves both servers to the key, with the access it had
        monkeypatch.setenv("TOOLS_MCP_TOKEN", f"Bearer {TOKEN}")
        monkeypatch.setenv("OTHER_MCP_TOKEN", f"Bearer {TOKEN}")
        async with harness(prod_url, providers=False) as h:
            for server, tools in (("tools", ["add"]), ("other", ["add", "count", "delete_everything", "echo", "held"])):
                async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http, \
                        streamable_http_client(f"{h.base}/mcp/{server}", http_client=http) as (read, write), \
                        ClientSession(read, write) as session:
                    await session.initialize()
                    assert sorted(t.name for t in (await session.list_tools()).tools) == tools
                    assert (await session.call_tool("add", {"a": 40, "b": 2})).content[0].text == "42"  # type: ignore[union-attr]
                    if server == "tools":
                        with pytest.raises(MCPError, match="may not call tool 'echo'"):
                            await session.call_tool("echo", {"text": "x"})
        assert seen.refused == 0 and all(hd["authorization"] == f"Bearer {TOKEN}" for _, hd in seen.requests)
