"""Builds the provider adapters of a node, keyed by upstream kind (`shieldes provider add --type`)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Mapping

from shieldes.providers.anthropic import AnthropicProvider
from shieldes.providers.azure import AzureProvider
from shieldes.providers.base import Provider
from shieldes.providers.bedrock import BedrockProvider
from shieldes.providers.gemini import GeminiProvider, VertexProvider
from shieldes.providers.openai import OpenAIProvider
from shieldes.providers.transport import UpstreamClient
from shieldes.settings import Settings


def build_providers(client: UpstreamClient, settings: Settings) -> dict[str, Provider]:
    """All adapters share the node's one keep-alive upstream client. The keys are the provider types
    accepted by `shieldes provider add --type` (providers.kinds.PROVIDER_KINDS)."""
    return {
        "openai": OpenAIProvider(client, settings),
        "anthropic": AnthropicProvider(client, settings),
        "azure": AzureProvider(client, settings),
        "bedrock": BedrockProvider(client, settings),
        "gemini": GeminiProvider(client, settings),
        "vertex": VertexProvider(client, settings),
    }


async def close_providers(providers: Mapping[str, Provider]) -> None:
    """What adapters hold besides the shared client (azure's Entra ID credential), released at the
    node's stop."""
    azure = providers.get("azure")
    if isinstance(azure, AzureProvider):
        await azure.close()


def open_client(on_request: Callable[[dict[str, str]], None] | None = None,
                max_body: int = 256 * 1024 * 1024) -> UpstreamClient:
    """The node's upstream client: keep-alive pools the gateway multiplexes many clients onto (few
    upstream hosts), timeouts set per call by the providers, no cookies (what an upstream sets must
    never reach calls for other keys or teams), the egress proxy of HTTPS_PROXY / HTTP_PROXY /
    NO_PROXY. Must be created inside the running event loop; the owner closes it on shutdown.
    `on_request` adds headers to every call (trace propagation); `max_body`: the most bytes of an
    answer held at once (SHIELDES_MAX_UPSTREAM_BODY_BYTES)."""
    return UpstreamClient(keepalive_timeout=30.0, on_request=on_request,
                          proxies=urllib.request.getproxies_environment(), max_body=max_body)
