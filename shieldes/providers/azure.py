"""Azure OpenAI: the OpenAI wire format at `/openai/deployments/{deployment}/{op}?api-version=V`;
the Responses API (`--responses native`) at the v1 surface `/openai/v1/responses`, which names the
deployment in the body's `model` instead of the path. The upstream model name of a target is the
Azure deployment name. Authentication is the `api-key`
header (default), a bearer token given as the key (`--auth bearer`), or Entra ID tokens from
azure-identity's default credential chain (`--auth entra`, extra `shieldes[azure]`: providers/entra.py)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

from shieldes.providers.base import Body, JsonResult, MediaOp, Operation, Target
from shieldes.providers.entra import EntraTokens
from shieldes.providers.openai import OpenAIProvider, op_path
from shieldes.providers.openai_responses import ResponsesEventStream
from shieldes.providers.openai_stream import OpenAIChunkStream
from shieldes.providers.transport import UpstreamClient, UpstreamResponse
from shieldes.providers.upstream_connection import Payload
from shieldes.settings import Settings

V1_OPS = frozenset({"responses", "input_tokens"})  # served only by Azure's v1 surface


def deployment_url(base_url: str, deployment: str, op: Operation, api_version: str) -> str:
    """`https://RESOURCE.openai.azure.com` -> `.../openai/deployments/{deployment}/chat/completions?api-version=V`
    (a base URL already ending in `/openai` is accepted too)."""
    parts = urlsplit(base_url.strip())
    path = parts.path.rstrip("/")
    if path.endswith("/openai"):
        path = path[: -len("/openai")]
    if op in V1_OPS:  # the v1 surface is versionless: no api-version, the deployment goes in `model`
        return urlunsplit((parts.scheme, parts.netloc, path + "/openai/v1" + op_path(op), "", ""))
    path += f"/openai/deployments/{quote(deployment, safe='')}{op_path(op)}"
    return urlunsplit((parts.scheme, parts.netloc, path, "api-version=" + quote(api_version, safe=""), ""))


class AzureProvider(OpenAIProvider):
    kind = "azure"
    # Azure OpenAI has no moderations endpoint (its content filters run on every call instead) and no
    # image variations (a dall-e-2 endpoint it never offered)
    media_ops = frozenset({"images", "image_edits", "speech", "transcriptions", "translations"})

    def __init__(self, client: UpstreamClient, settings: Settings) -> None:
        super().__init__(client, settings)
        self._azure_urls: dict[tuple[str, str, str, str], str] = {}
        self._entra = EntraTokens()

    async def close(self) -> None:
        """Releases the Entra ID credential's HTTP sessions (at the node's stop)."""
        await self._entra.close()

    def _endpoint(self, target: Target, op: Operation) -> tuple[str, bool]:
        version = target.options.get("api_version", "")
        key = (target.base_url, target.model, op, version)
        url = self._azure_urls.get(key)
        if url is None:
            url = self._azure_urls[key] = deployment_url(target.base_url, target.model, op, version)
        return url, target.options.get("auth", "api-key") == "api-key"

    def strict(self, target: Target) -> bool:
        """Azure OpenAI refuses what OpenAI does, at any base URL (a private endpoint, a gateway)."""
        return True

    async def _with_token(self, target: Target) -> Target:
        """Under `--auth entra` the key is the current Entra ID token, sent as a bearer token."""
        if target.options.get("auth") != "entra":
            return target
        token = await self._entra.token(target.deployment)
        return Target(target.deployment, target.base_url, target.model, token, target.options)

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        return await super().call(op, await self._with_token(target), body)

    async def call_raw(self, op: Operation, target: Target, payload: Payload) -> JsonResult:
        return await super().call_raw(op, await self._with_token(target), payload)

    async def stream_bytes(self, op: Operation, target: Target, payload: Payload,
                           whole: Callable[[], Body]) -> OpenAIChunkStream:
        return await super().stream_bytes(op, await self._with_token(target), payload, whole)

    async def responses_stream(self, target: Target, body: Body, raw: Payload | None = None) -> ResponsesEventStream:
        return await super().responses_stream(await self._with_token(target), body, raw)

    async def media(self, op: MediaOp, target: Target, payload: bytes, content_type: str,
                    streaming: bool) -> UpstreamResponse:
        return await super().media(op, await self._with_token(target), payload, content_type, streaming)
