"""Every `shieldes provider add` line in docs/providers.md runs as written and its models route to it;
the OpenAI-compatible presets serve chat, streams and embeddings through type `openai` at their
own URL shapes."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest
from aiohttp import web

from shieldes.config_writer import load_config
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.projections.state import ConfigState
from shieldes.routing.router import resolve
from shieldes.usage.catalog import shipped
from tests.cli import ok
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import harness

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
                for model in args[args.index("--models") + 1].split(",")
                if model not in shipped() and not model.endswith("*")]  # a pattern is priced per name it serves
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
            asked = model.removesuffix("*") + "x" if model.endswith("*") else model  # a name a pattern serves
            route = resolve(config, f"{name}/{asked}")
            assert route is not None and [d.name for d in route.deployments] == [name], (name, model)
            assert route.model == asked


def preset_lines() -> dict[str, list[str]]:
    """Service name -> its documented `provider add` arguments."""
    text = DOC.read_text()
    out = {}
    for name in PRESETS:
        found = re.search(rf"^\| {re.escape(name)} +\| `(shieldes provider add [^`]+)`", text, re.M)
        assert found, name
        out[name] = shlex.split(found.group(1))[1:]
    return out


class MountedUpstream(FakeUpstream):
    """The fake OpenAI API at the root and under the path prefixes the presets' base URLs carry
    (Groq /openai/v1, Fireworks /inference/v1, OpenRouter /api/v1)."""

    prefixes: tuple[str, ...] = ()

    def app(self) -> web.Application:
        root = super().app()
        for prefix in self.prefixes:
            root.add_subapp(prefix, super().app())
        return root


async def test_openai_compatible_presets_serve_chat_streams_and_embeddings(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = preset_lines()
    up = MountedUpstream(completion_tokens=3)
    paths = {name: urlsplit(args[args.index("--base-url") + 1]).path.rstrip("/") for name, args in lines.items()}
    up.prefixes = tuple(sorted({p.removesuffix("/v1") for p in paths.values()} - {""}))
    async with harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        for name, args in lines.items():
            base = args[args.index("--base-url") + 1]
            fake_base = up.url + urlsplit(base).path  # the preset's own path on the fake's host
            if "--api-key-env" in args:
                monkeypatch.setenv(args[args.index("--api-key-env") + 1], f"key-{name}")
            await asyncio.to_thread(ok, database_url, *[fake_base if a == base else a for a in args])
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for name, args in lines.items():
            provider, models = args[2], args[args.index("--models") + 1].split(",")
            want = paths[name] if paths[name].endswith("/v1") else paths[name] + "/v1"  # join_endpoint adds it
            for model in models:
                if "embed" in model:
                    emb = await client.embeddings.create(model=f"{provider}/{model}", input=["one two"])
                    assert emb.usage.prompt_tokens == 2 and up.last().path == want + "/embeddings", name
                    continue
                chat = await client.chat.completions.create(model=f"{provider}/{model}",
                                                            messages=[{"role": "user", "content": "hi"}])
                assert chat.choices[0].message.content and up.last().path == want + "/chat/completions", name
                assert up.last().body["model"] == model
                keyed = "--api-key-env" in args
                assert up.last().headers.get("authorization") == (f"Bearer key-{name}" if keyed else None), name
            stream = await client.chat.completions.create(model=f"{provider}/{models[0]}", stream=True,
                                                          messages=[{"role": "user", "content": "hi"}])
            assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]), name
