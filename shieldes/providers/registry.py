"""Builds the provider adapters of a node, keyed by upstream kind (`shieldes provider add --type`)."""

from __future__ import annotations

import aiohttp

from shieldes.providers.anthropic import AnthropicProvider
from shieldes.providers.azure import AzureProvider
from shieldes.providers.base import Provider
from shieldes.providers.bedrock import BedrockProvider
from shieldes.providers.gemini import GeminiProvider, VertexProvider
from shieldes.providers.openai import OpenAIProvider
from shieldes.settings import Settings


def build_providers(session: aiohttp.ClientSession, settings: Settings) -> dict[str, Provider]:
    """All adapters share the node's one keep-alive `session`. The keys are the provider types
    accepted by `shieldes provider add --type` (providers.kinds.PROVIDER_KINDS)."""
    return {
        "openai": OpenAIProvider(session, settings),
        "anthropic": AnthropicProvider(session, settings),
        "azure": AzureProvider(session, settings),
        "bedrock": BedrockProvider(session, settings),
        "gemini": GeminiProvider(session, settings),
        "vertex": VertexProvider(session, settings),
    }


def open_session(settings: Settings, trace_configs: list[aiohttp.TraceConfig] | None = None) -> aiohttp.ClientSession:
    """The node's upstream client session: a large keep-alive pool (the gateway multiplexes many
    clients onto few upstream hosts), cached DNS, timeouts set per call by the providers.
    Must be created inside the running event loop; the owner closes it on shutdown."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30)
    # No cookie jar: cookies an upstream sets must never be replayed on calls for other keys or teams.
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                 cookie_jar=aiohttp.DummyCookieJar(), trace_configs=trace_configs)
