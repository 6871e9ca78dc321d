"""The `provider add` contract of each type, and its refusals, through the CLI."""

from __future__ import annotations

from tests.cli import count_events, invoke, ok, refused


def test_provider_add_contract_per_type(database_url: str) -> None:
    azure = ok(database_url, "provider", "add", "az", "--type", "azure", "--base-url",
               "https://res.openai.azure.com", "--api-version", "2024-10-21", "--api-key-env", "AZ_KEY",
               "--models", "deployment-a,deployment-b")
    assert azure["options"] == {"api_version": "2024-10-21"} and azure["models"] == ["deployment-a", "deployment-b"]
    gemini = ok(database_url, "provider", "add", "gm", "--type", "gemini", "--base-url",
                "https://generativelanguage.googleapis.com/v1beta", "--api-key-env", "GEMINI_API_KEY",
                "--models", "gemini-2.5-flash")
    assert gemini["type"] == "gemini"
    vertex = ok(database_url, "provider", "add", "vx", "--type", "vertex", "--project", "p1", "--location",
                "us-central1", "--credentials-file", "/etc/sa.json", "--models", "gemini-2.5-pro")
    assert vertex["base_url"] == "https://us-central1-aiplatform.googleapis.com"
    assert vertex["options"] == {"credentials_file": "/etc/sa.json", "location": "us-central1", "project": "p1"}
    updated = ok(database_url, "provider", "update", "az", "--api-version", "2025-01-01-preview")
    assert updated["options"] == {"api_version": "2025-01-01-preview"}
    listed = {p["name"]: p for p in ok(database_url, "provider", "list")}
    assert listed["az"]["options"] == {"api_version": "2025-01-01-preview"} and listed["gm"]["options"] == {}

    before = count_events(database_url)
    line = refused(database_url, "provider", "add", "az2", "--type", "azure", "--base-url",
                   "https://res.openai.azure.com", "--models", "d")
    assert "needs --api-version" in line
    line = refused(database_url, "provider", "add", "vx2", "--type", "vertex", "--project", "p", "--location", "l",
                   "--api-version", "x", "--models", "m")
    assert "--api-version does not apply to type 'vertex'" in line
    line = refused(database_url, "provider", "update", "gm", "--api-version", "v")
    assert "--api-version does not apply to type 'gemini'" in line
    assert count_events(database_url) == before


def test_bedrock_contract(database_url: str) -> None:
    bedrock = ok(database_url, "provider", "add", "br", "--type", "bedrock", "--region", "eu-west-1", "--models",
                 "anthropic.claude-3-5-sonnet-20240620-v1:0,amazon.titan-embed-text-v2:0")
    assert bedrock["base_url"] == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert bedrock["options"] == {"region": "eu-west-1"}
    local = ok(database_url, "provider", "add", "br-test", "--type", "bedrock", "--region", "us-east-1",
               "--base-url", "http://127.0.0.1:9000", "--models", "amazon.nova-pro-v1:0")
    assert local["base_url"] == "http://127.0.0.1:9000"
    assert "needs --region" in refused(database_url, "provider", "add", "br2", "--type", "bedrock", "--models", "m")


def test_model_alias_list_remove(database_url: str) -> None:
    ok(database_url, "provider", "add", "az", "--type", "azure", "--base-url", "https://res.openai.azure.com",
       "--api-version", "2024-10-21", "--models", "prod-gpt4o")
    ok(database_url, "provider", "add", "oa", "--type", "openai", "--base-url", "https://api.openai.com/v1",
       "--models", "gpt-4o,claude-sonnet-4-5")
    ok(database_url, "model", "alias", "sonnet", "--target", "oa/claude-sonnet-4-5")
    made = ok(database_url, "model", "alias", "gpt-4o", "--target", "az/prod-gpt4o:3", "--target", "oa/gpt-4o",
              "--fallback", "sonnet")
    assert made["targets"] == [{"provider": "az", "model": "prod-gpt4o", "weight": 3.0},
                               {"provider": "oa", "model": "gpt-4o", "weight": 1.0}]
    listed = ok(database_url, "model", "list")
    assert [a["name"] for a in listed] == ["gpt-4o", "sonnet"] and listed[0]["fallbacks"] == ["sonnet"]
    table = invoke(database_url, "model", "list")
    assert "az/prod-gpt4o:3,oa/gpt-4o:1" in table.stdout
    before = count_events(database_url)
    assert "is a fallback of gpt-4o" in refused(database_url, "model", "remove", "sonnet")
    assert "does not serve 'gpt-5'" in refused(database_url, "model", "alias", "x", "--target", "az/gpt-5")
    assert "PROVIDER/MODEL" in refused(database_url, "model", "alias", "x", "--target", "gpt-5")
    assert count_events(database_url) == before
    ok(database_url, "model", "remove", "gpt-4o")
    assert [a["name"] for a in ok(database_url, "model", "list")] == ["sonnet"]
