"""What Vertex AI's two dialects share, and its Claude models: OAuth access tokens (google-auth,
extra `shieldes[vertex]`), the model URL
`{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`,
and `VertexClaudeProvider`, Anthropic's Messages wire format at the `anthropic` publisher
(`:rawPredict`, `:streamRawPredict`), which the `vertex` provider serves its Claude models with
(the Gemini ones are providers/gemini.py's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import orjson

from shieldes.errors import ProviderMisconfigured
from shieldes.providers import vertex_options
from shieldes.providers.anthropic import AnthropicProvider, Endpoint, NativeT, Outgoing
from shieldes.providers.anthropic_native import Passthrough
from shieldes.providers.base import Target, UpstreamFailure
from shieldes.providers.http import with_version
from shieldes.providers.node_credentials import Bounded, Outages, SharedFetch, one_line, unusable
from shieldes.providers.transport import UpstreamClient
from shieldes.settings import Settings

CLOUD_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def model_url(target: Target, publisher: str, model: str, method: str) -> str:
    """A Vertex AI model's method under the target's base URL (the regional or global endpoint).
    `@` stays as it is in a model id (`claude-sonnet-4-5@20250929`), as Google's own clients send it."""
    o = target.options
    return (f"{with_version(target.base_url, 'v1')}/projects/{quote(o.get('project', ''), safe='')}"
            f"/locations/{quote(o.get('location', ''), safe='')}/publishers/{publisher}/models/"
            f"{quote(model, safe='@')}:{method}")


MISSING_EXTRA = ("provider type 'vertex' needs google-auth, which is not installed here; pip install "
                 "'shieldes[vertex]' on every node and restart it")
RETRY_AFTER = 10.0  # seconds a failed token fetch is answered again before google-auth is asked anew
TOKEN_TIMEOUT = 10.0  # seconds each of google-auth's token requests may take (its own default: 120)


def _fix(deployment: str, path: str) -> str:
    if path:
        return (f"check the service-account key {path} (readable on every node, not deleted in IAM, its account "
                f"allowed on the project) or give another with `shieldes provider update {deployment} "
                "--credentials-file PATH`")
    return ("give this node Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth "
            "application-default login`, an attached service account) or a key file with "
            f"`shieldes provider update {deployment} --credentials-file PATH`")


def _unusable(deployment: str, path: str, why: str) -> ProviderMisconfigured:
    """`deployment`'s refusal when its token source failed with `why` ("": google-auth missing)."""
    return unusable(deployment, f"no Google access token ({why}); {_fix(deployment, path)}" if why else MISSING_EXTRA)


class GoogleTokens:
    """OAuth access tokens through google-auth: a service-account file per deployment, or the
    node's Application Default Credentials. google-auth refreshes synchronously, so refreshing
    runs in a worker thread; a token is reused until shortly before it expires. No token to be had
    (the extra missing, no credentials, a key file unreadable, the token endpoint refusing) is the
    node's configuration, not the upstream's failure (node_credentials.py): one fetch at a time per
    source, shared by the requests waiting for it (SharedFetch), its failure answered to them and
    for RETRY_AFTER."""

    def __init__(self) -> None:
        self._creds: dict[str, Any] = {}
        self._fetches: SharedFetch[tuple[bool, str]] = SharedFetch("google-token")
        self._failed: dict[str, tuple[float, str]] = {}  # by source: (monotonic time, why; "" no google-auth)
        self._outages = Outages("Vertex AI deployments signing in with google-auth")

    async def token(self, target: Target) -> str:
        path = target.options.get("credentials_file", "")
        creds = self._creds.get(path)
        if creds is not None and creds.token and not creds.expired:  # `expired` keeps a safety margin
            return str(creds.token)
        got = await self._fetches.get(path, lambda: self._fetch(path, target.deployment))
        if got[0]:
            return got[1]
        raise _unusable(target.deployment, path, got[1])

    async def _fetch(self, path: str, deployment: str) -> tuple[bool, str]:
        """(True, a fresh token), or (False, why there is none: "" when google-auth is missing)."""
        failed = self._failed.get(path)
        if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER:
            return False, failed[1]
        try:
            fresh = await asyncio.to_thread(self._refresh, path)
        except Exception as exc:  # google.auth.exceptions.*, file and JSON errors, the extra missing
            # (the reason is the source's; the fix names each request's own deployment)
            why = "" if isinstance(exc, ImportError) else one_line(exc, 300)
            self._failed[path] = (time.monotonic(), why)
            self._outages.failed(path, _unusable(deployment, path, why).message)
            return False, why
        self._failed.pop(path, None)
        self._outages.recovered(path)
        return True, str(fresh.token)

    def _refresh(self, path: str) -> Any:
        import google.auth
        from google.auth.transport.requests import Request
        from google.oauth2 import service_account

        creds = self._creds.get(path)
        if creds is None:
            if path:
                accounts: Any = service_account.Credentials
                creds = accounts.from_service_account_file(path, scopes=[CLOUD_SCOPE])
            else:
                creds, _project = google.auth.default(scopes=[CLOUD_SCOPE])
            self._creds[path] = creds
        creds.refresh(Bounded(Request(), TOKEN_TIMEOUT))
        return creds


def _with_betas(passthrough: Passthrough, betas: str | None) -> Passthrough:
    """`passthrough` with its `anthropic-beta` header set to `betas` (none when empty or None)."""
    headers = {k: v for k, v in passthrough.headers.items() if k != vertex_options.BETA_HEADER}
    return Passthrough(dict(headers, **{vertex_options.BETA_HEADER: betas}) if betas else headers, passthrough.query)


class VertexClaudeProvider(AnthropicProvider):
    """Claude on Vertex AI: the Messages API's bodies, answers, event streams and error JSON, at
    the `anthropic` publisher's URLs with a Google access token. The body names no `model` (the
    URL does) and carries `anthropic_version`; a count names its model in the body, as Anthropic's
    own Vertex client sends them. Fields Vertex refuses are left out and named, a `service_tier`
    becomes Vertex's tier header (vertex_options.claude_body). `anthropic-beta` headers travel as
    they do to Anthropic, less any value Vertex answers it does not take."""

    kind = "vertex"

    def __init__(self, client: UpstreamClient, settings: Settings, tokens: GoogleTokens) -> None:
        super().__init__(client, settings)
        self._tokens = tokens
        self._refused = vertex_options.RefusedBetas()

    def _endpoint(self, target: Target, endpoint: Endpoint, query: str = "") -> str:
        # the client's query (`?beta=true`) has no meaning here: Vertex takes betas as headers
        if endpoint == "count_tokens":
            return model_url(target, "anthropic", "count-tokens", "rawPredict")
        method = "streamRawPredict" if endpoint == "stream" else "rawPredict"
        return model_url(target, "anthropic", target.model, method)

    async def _auth(self, target: Target) -> dict[str, str]:
        return {"Authorization": "Bearer " + await self._tokens.token(target)}

    def _payload(self, payload: bytes, endpoint: Endpoint) -> Outgoing:
        call = vertex_options.claude_body(orjson.loads(payload), endpoint == "count_tokens")
        return Outgoing(orjson.dumps(call.body), call.headers, call.dropped)

    async def _sent(self, target: Target, send: Callable[[Passthrough], Awaitable[NativeT]],
                    passthrough: Passthrough) -> NativeT:
        # Which beta values Vertex takes depends on the model and the region and changes over time;
        # its 400 names the ones it refuses, so those (and only those) are left out: sent again
        # once without them, and left out of the model's next calls for a while (RefusedBetas)
        header = vertex_options.BETA_HEADER
        named = vertex_options.vertex_betas(passthrough.headers.get(header))
        if named is not None:
            passthrough = _with_betas(passthrough, named)
        now = time.monotonic()
        left_out = self._refused.known(target.model, passthrough.headers.get(header), now)
        if left_out:
            passthrough = _with_betas(passthrough, vertex_options.without_betas(passthrough.headers.get(header),
                                                                                left_out))
        try:
            answer = await send(passthrough)
        except UpstreamFailure as failure:
            refused = vertex_options.refused_betas(failure.status, failure.body)
            kept = vertex_options.without_betas(passthrough.headers.get(header), refused)
            if kept is None:
                raise
            self._refused.add(target.model, refused, now)
            answer = await send(_with_betas(passthrough, kept))
            left_out += refused
        answer.dropped.extend(f"{header}: {value}" for value in left_out)
        return answer

    def _advice(self, target: Target, failure: UpstreamFailure) -> UpstreamFailure:
        advice = vertex_options.claude_advice(failure.status, failure.body, target.model,
                                              target.options.get("project", ""), target.options.get("location", ""))
        if advice:
            failure.message = f"{failure.message}; {advice}"
            failure.args = (failure.message,)
        return failure
