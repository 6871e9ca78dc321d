"""What an operator reads from the CLI besides times (tests/integration/test_cli_times.py): every
command list says in full what each command does (click cut it with "..." to the width left on the
line), and tables print structured values as the other tables do: an alias's targets as `model
list` prints them, provider options as key=value, never a Python dict's repr."""

from __future__ import annotations

import re

from tests.cli import invoke, ok


def test_command_lists_say_in_full_what_each_command_does(database_url: str) -> None:
    for group in ((), ("key",), ("db",), ("audit",), ("secrets",), ("config",), ("snapshot",)):
        shown = invoke(database_url, *group, "--help")
        assert shown.exit_code == 0, shown.stderr
        listed = shown.stdout.split("Commands:", 1)[1]
        assert "..." not in listed, (group, listed)
    root = " ".join(invoke(database_url, "--help").stdout.split())
    assert "into hourly rollups (totals unchanged)." in root and "refused and failed ones included)." in root
    key = " ".join(invoke(database_url, "key", "--help").stdout.split())
    assert "the old secret stops working." in key


def test_tables_print_structured_values_as_the_other_tables_do(database_url: str) -> None:
    ok(database_url, "provider", "add", "openai", "--type", "openai", "--base-url", "https://api.openai.com/v1",
       "--api-key-env", "OPENAI_API_KEY", "--models", "gpt-4o,gpt-4o-mini")
    ok(database_url, "provider", "add", "az", "--type", "azure", "--base-url", "https://x.openai.azure.com",
       "--api-version", "2024-10-21", "--api-key-env", "AZ_KEY", "--models", "gpt-4o")
    made = invoke(database_url, "model", "alias", "fast", "--target", "openai/gpt-4o-mini:2", "--target",
                  "az/gpt-4o", "--fallback", "gpt-4o")
    assert made.exit_code == 0, made.stderr
    listed = invoke(database_url, "model", "list").stdout
    for text in (made.stdout, listed):
        assert "openai/gpt-4o-mini:2,az/gpt-4o:1" in text and "{" not in text, text
    providers = invoke(database_url, "provider", "list").stdout
    assert re.search(r"^az .* api_version=2024-10-21\s*$", providers, re.M), providers
    assert re.search(r"^openai .* -\s*$", providers, re.M) and "{" not in providers, providers
    # JSON keeps the structures
    assert ok(database_url, "model", "alias", "fast", "--target", "az/gpt-4o")["targets"] == [
        {"provider": "az", "model": "gpt-4o", "weight": 1.0}]
    assert {p["name"]: p["options"] for p in ok(database_url, "provider", "list")}["openai"] == {}
