"""Every `shieldes provider add` line in docs/providers.md runs as written and its models route to it."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path

from shieldes.config_writer import load_config
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.projections.state import ConfigState
from shieldes.routing.router import resolve
from shieldes.usage.catalog import shipped
from tests.cli import ok

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"
PRESETS = ("Mistral", "Groq", "DeepSeek", "Together", "Fireworks", "OpenRouter", "xAI", "vLLM", "Ollama",
           "LM Studio")


def documented_lines() -> list[list[str]]:
    text = DOC.read_text().replace("\\\n", " ")
    lines = re.findall(r"shieldes provider add [^`\n]+", text)
    return [shlex.split(line)[1:] for line in lines if "127.0.0.1" not in line]


def test_every_documented_hosted_model_has_a_shipped_price() -> None:
    """A model served from a hosted service in the docs never silently costs $0. Azure deployments
    are named by their owner and self-hosted servers (vLLM, Ollama, LM Studio) cost what you set."""
    self_hosted = ("localhost", "vllm:", "127.0.0.1", "azure.com")
    unpriced = [(args[2], model) for args in documented_lines()
                if not any(h in " ".join(args) for h in self_hosted)
                for model in args[args.index("--models") + 1].split(",") if model not in shipped()]
    assert unpriced == []


def test_presets_are_documented() -> None:
    text = DOC.read_text()
    for name in PRESETS:
        assert re.search(rf"^\| {re.escape(name)} +\| `shieldes provider add ", text, re.M), name


async def _config(database_url: str) -> ConfigState:
    pool = open_pool(database_url, size=1)
    await pool.open(wait=True)
    try:
        return (await load_config(PostgresEventStore(pool), Codec())).state
    finally:
        await pool.close()


def test_every_documented_provider_add_line_parses_and_routes(database_url: str) -> None:
    lines = documented_lines()
    kinds = {args[args.index("--type") + 1] for args in lines}
    assert {"openai", "anthropic", "azure", "bedrock", "gemini", "vertex"} <= kinds
    for args in lines:
        ok(database_url, *args)
    config = asyncio.run(_config(database_url))
    for args in lines:
        name, models = args[2], args[args.index("--models") + 1].split(",")
        for model in models:
            route = resolve(config, f"{name}/{model}")
            assert route is not None and [d.name for d in route.deployments] == [name], (name, model)
