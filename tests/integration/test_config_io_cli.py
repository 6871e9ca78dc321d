"""`shieldes config import/export` as a user runs them, against real Postgres: in pytest's process
(tests/cli.py, what the command does), and one test as a real process (the exit code and the one
line on stderr a shell sees)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.cli import completed

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data"


def shieldes(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return completed(*args, env={"SHIELDES_DATABASE_URL": url, **env})


def shieldes_process(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
    environ.update(PYTHONPATH=str(ROOT), SHIELDES_DATABASE_URL=url, **env)
    return subprocess.run([sys.executable, "-m", "shieldes", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)


def config_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE stream = 'config'").fetchone()
        assert row is not None
        return int(row[0])


def test_import_dry_run_then_import_then_idempotent(database_url: str) -> None:
    sample = str(DATA / "litellm_config.yaml")
    dry = shieldes(database_url, "config", "import", sample, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["dry_run"] and out["events_appended"] == 0
    # 5 providers (the gpt-4o deployment with rpm is one of its own), 3 aliases (model names LiteLLM
    # clients use; gpt-4o and claude-sonnet fall back on each other, so one of them is set twice: first
    # without its fallback, which does not exist yet), gpt-4o's routing strategy (simple-shuffle:
    # weighted); the file's 2 prices equal the shipped defaults in force, so they write nothing
    assert out["summary"] == {"add": 9, "update": 0, "unchanged": 2}
    assert config_events(database_url) == 0

    done = shieldes(database_url, "config", "import", sample)
    assert done.returncode == 0, done.stderr
    assert "did add 9" in done.stdout and "note:" in done.stderr
    assert config_events(database_url) == 10

    again = shieldes(database_url, "config", "import", sample, "--json")
    assert json.loads(again.stdout)["summary"] == {"add": 0, "update": 0, "unchanged": 11}
    assert config_events(database_url) == 10
    with psycopg.connect(database_url) as conn:
        actors = conn.execute("SELECT DISTINCT metadata->>'actor' FROM events").fetchall()
    assert all("config-import" in a[0] for a in actors)


def test_plaintext_key_refused_without_encryption_key_and_never_exported(database_url: str) -> None:
    sample = str(DATA / "litellm_plaintext.yaml")
    refused = shieldes(database_url, "config", "import", sample)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "SHIELDES_ENCRYPTION_KEY" in refused.stderr
    assert config_events(database_url) == 0

    ok = shieldes(database_url, "config", "import", sample, SHIELDES_ENCRYPTION_KEY="passphrase")
    assert ok.returncode == 0, ok.stderr
    with psycopg.connect(database_url) as conn:
        data = conn.execute("SELECT data::text FROM events").fetchall()
    assert all("sk-plaintext" not in d[0] for d in data)
    for fmt in ("shieldes", "bifrost", "litellm"):
        exported = shieldes(database_url, "config", "export", "--format", fmt)
        assert exported.returncode == 0, exported.stderr
        assert "sk-plaintext" not in exported.stdout and "enc:" not in exported.stdout


def test_bad_file_is_one_line_and_appends_nothing(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"providers": {"openai": {"keys": [{"value": "env.K", "models": ["gpt-*"]}]}}}')
    for args in ([str(bad)], [str(tmp_path / "missing.yaml")]):
        result = shieldes_process(database_url, "config", "import", *args)
        assert result.returncode == 1 and result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert config_events(database_url) == 0


def test_a_shieldes_export_imports_back_and_names_its_format_when_read_as_another(database_url: str,
                                                                                  tmp_path: Path) -> None:
    assert shieldes(database_url, "config", "import", str(DATA / "litellm_config.yaml")).returncode == 0
    own = tmp_path / "export.json"
    assert shieldes(database_url, "config", "export", "-o", str(own)).returncode == 0
    before = config_events(database_url)
    for fmt in ("bifrost", "litellm"):
        refused = shieldes(database_url, "config", "import", str(own), "--format", fmt)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "`shieldes config export` file" in refused.stderr and "--format shieldes" in refused.stderr
    for fmt in ("auto", "shieldes"):
        again = shieldes(database_url, "--json", "config", "import", str(own), "--format", fmt)
        assert again.returncode == 0, again.stderr
        out = json.loads(again.stdout)
        assert out["format"] == "shieldes" and out["summary"]["add"] == out["summary"]["update"] == 0
    assert config_events(database_url) == before
    # the Bifrost export imports back too, into the same config
    bifrost = tmp_path / "config.json"
    assert shieldes(database_url, "config", "export", "--format", "bifrost", "-o", str(bifrost)).returncode == 0
    again = shieldes(database_url, "--json", "config", "import", str(bifrost))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"]["add"] == 0 and config_events(database_url) == before


def test_unsupported_entries_need_skip_unsupported(database_url: str, tmp_path: Path) -> None:
    mixed = tmp_path / "config.yaml"
    mixed.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n    litellm_params: {model: cohere/command-r, api_key: os.environ/CO_KEY}\n"
        "  - model_name: gpt-4o-mini\n    litellm_params: {model: openai/gpt-4o-mini}\n"
    )
    refused = shieldes(database_url, "config", "import", str(mixed))
    assert refused.returncode == 1 and "--skip-unsupported" in refused.stderr and "cohere" in refused.stderr
    assert config_events(database_url) == 0
    done = shieldes(database_url, "--json", "config", "import", str(mixed), "--skip-unsupported")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["summary"]["add"] == 1 and "cohere" in out["skipped"][0]
    exported = shieldes(database_url, "config", "export")
    assert json.loads(exported.stdout)["providers"][0]["api_key"] == "env:OPENAI_API_KEY"


def test_bifrost_cloud_import_dry_run_then_an_ambiguous_merge_refused(database_url: str) -> None:
    sample = str(DATA / "bifrost_cloud.json")
    dry = shieldes(database_url, "--json", "config", "import", sample, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["summary"] == {"add": 9, "update": 0, "unchanged": 0}  # 6 providers, 3 aliases
    kinds = {c["name"]: c["detail"].split()[0] for c in out["changes"] if c["kind"] == "provider"}
    assert kinds == {"openai": "openai", "azure-eu": "azure", "azure-us": "azure", "bedrock": "bedrock",
                     "vertex": "vertex", "gemini": "gemini"}
    assert config_events(database_url) == 0

    added = shieldes(database_url, "provider", "add", "legacy", "--type", "openai", "--base-url",
                     "https://proxy.internal/v1", "--api-key-env", "K", "--models", "gpt-4o")
    assert added.returncode == 0, added.stderr
    before = config_events(database_url)
    refused = shieldes(database_url, "config", "import", sample)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: ") and "existing provider(s) legacy" in refused.stderr
    assert config_events(database_url) == before


def test_wildcard_routes_import_as_patterns_and_export_as_each_tool_says_them(database_url: str,
                                                                              tmp_path: Path) -> None:
    routes = tmp_path / "config.yaml"
    routes.write_text(
        "model_list:\n"
        "  - model_name: anthropic/*\n    litellm_params: {model: anthropic/*, api_key: os.environ/ANTHROPIC_KEY}\n"
        "  - model_name: claude-opus-*\n    litellm_params: {model: anthropic/claude-opus-*,"
        " api_key: os.environ/ANTHROPIC_KEY, input_cost_per_token: 0.000005, output_cost_per_token: 0.000025}\n"
    )
    done = shieldes(database_url, "config", "import", str(routes))
    assert done.returncode == 0, done.stderr
    assert "clients asking anthropic/NAME reach provider 'anthropic'" in done.stderr
    listed = shieldes(database_url, "--json", "provider", "list")
    assert [p["models"] for p in json.loads(listed.stdout)] == [["*", "claude-opus-*"]]
    prices = shieldes(database_url, "--json", "pricing", "list", "--source", "override")
    assert [(r["model"], r["input_per_1m"]) for r in json.loads(prices.stdout)] == [("claude-opus-*", 5.0)]

    litellm = shieldes(database_url, "config", "export", "--format", "litellm", "-o", str(tmp_path / "out.yaml"))
    assert litellm.returncode == 0 and "warning" not in litellm.stderr, litellm.stderr
    again = shieldes(database_url, "--json", "config", "import", str(tmp_path / "out.yaml"))
    assert json.loads(again.stdout)["summary"]["add"] == 0 and json.loads(again.stdout)["summary"]["update"] == 0

    bifrost = shieldes(database_url, "config", "export", "--format", "bifrost")
    assert bifrost.returncode == 0, bifrost.stderr
    assert json.loads(bifrost.stdout)["providers"]["anthropic"]["keys"][0]["models"] == ["*"]
    assert "warning: provider 'anthropic': pattern 'claude-opus-*' is exported as \"*\"" in bifrost.stderr
