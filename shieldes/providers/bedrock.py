"""Amazon Bedrock as an upstream: chat through Converse and ConverseStream (binary AWS event-stream
framing, parsed with botocore's decoder), Titan embeddings through InvokeModel. Requests are
signed with botocore's SigV4 signer using credentials from botocore's standard chain (environment,
shared profile, container or instance role); a provider key, when configured, is sent instead as
a Bedrock API key (`Authorization: Bearer`). Needs the extra `shieldes[bedrock]` (botocore)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import orjson

from shieldes.errors import InvalidRequest, ProviderMisconfigured
from shieldes.providers import bedrock_betas
from shieldes.providers.base import Body, InputTokenCounter, JsonResult, Operation, Target, UpstreamFailure
from shieldes.providers.bedrock_answers import (
    ConverseStreamTranslator,
    converse_to_chat,
    stop_sequences,
    stream_exception,
)
from shieldes.providers.bedrock_translate import converse_request, titan_requests
from shieldes.providers.chat_answers import answer_id, embeddings_response
from shieldes.providers.dropped import Outbound
from shieldes.providers.http import (
    SHAPE_ERRORS,
    event_object,
    invalid_response,
    open_event_stream,
    post_for_object,
    timeouts,
)
from shieldes.providers.node_credentials import Outages, SharedFetch, one_line, unusable
from shieldes.providers.streams import TranslatedChunkStream
from shieldes.providers.transport import UpstreamClient, UpstreamResponse
from shieldes.settings import Settings

MISSING_EXTRA = ("provider type 'bedrock' needs botocore, which is not installed here; pip install "
                 "'shieldes[bedrock]' on every node and restart it")
NO_CREDENTIALS = "none in the environment, a shared profile, a container or an instance role"
RETRY_AFTER = 10.0  # seconds a failed credential lookup is answered again before the chain is asked anew


def _fix(deployment: str) -> str:
    return ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) on this node, attach a role, or use "
            f"a Bedrock API key: `shieldes provider update {deployment} --api-key-env VAR`")


def _botocore(deployment: str) -> Any:
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.eventstream
        import botocore.session
    except ImportError:
        raise unusable(deployment, MISSING_EXTRA) from None
    return botocore


class _Signer:
    """SigV4 with botocore. Credentials come from one botocore session per node (its standard
    chain); refreshable ones (roles) are refreshed in a worker thread, as botocore blocks. None to
    be had is the node's configuration, not the upstream's failure (node_credentials.py): one
    lookup at a time, shared by the requests waiting for it (SharedFetch), its failure answered to
    them and for RETRY_AFTER, then the chain is asked again."""

    def __init__(self) -> None:
        self._credentials: Any = None
        self._fetches: SharedFetch[Any] = SharedFetch("aws-credentials")
        self._failed: tuple[float, str] | None = None  # (monotonic time, why) of the last failed lookup
        self._outages = Outages("Bedrock deployments signing with the node's AWS credentials")

    def library(self, deployment: str) -> Any:
        """botocore, or the deployment's ProviderMisconfigured (logged once) without the extra."""
        try:
            return _botocore(deployment)
        except ProviderMisconfigured as exc:
            self._outages.failed("extra", exc.message)
            raise

    async def headers(self, target: Target, url: str, payload: bytes, accept: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": accept}
        if target.api_key:  # a Bedrock API key
            headers["Authorization"] = "Bearer " + target.api_key
            return headers
        bc = self.library(target.deployment)
        frozen = await self._frozen(target.deployment)
        request = bc.awsrequest.AWSRequest(method="POST", url=url, data=payload, headers=headers)
        bc.auth.SigV4Auth(frozen, "bedrock", target.options.get("region", "us-east-1")).add_auth(request)
        return dict(request.headers.items())

    async def _frozen(self, deployment: str) -> Any:
        creds = self._credentials
        if creds is not None:
            refresh = getattr(creds, "refresh_needed", None)
            if not (refresh and refresh()):
                return creds.get_frozen_credentials()
        got = await self._fetches.get("chain", lambda: self._fetch(deployment))
        if isinstance(got, str):
            raise unusable(deployment, f"no AWS credentials ({got}); {_fix(deployment)}")
        return got

    async def _fetch(self, deployment: str) -> Any:
        """The chain's frozen credentials, or why there are none (a str)."""
        failed = self._failed
        if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER:
            return failed[1]
        try:
            frozen = await asyncio.to_thread(self._lookup)
        except Exception as exc:  # botocore's errors: a broken profile, a role it cannot assume, no credentials
            why = NO_CREDENTIALS if isinstance(exc, LookupError) else one_line(exc, 300)
            self._failed = (time.monotonic(), why)
            refused = unusable(deployment, f"no AWS credentials ({why}); {_fix(deployment)}")
            self._outages.failed("chain", refused.message)
            return why
        self._failed = None
        self._outages.recovered("chain")
        return frozen

    def _lookup(self) -> Any:
        """The chain's credentials, frozen (a role's fetched or refreshed); LookupError: none found."""
        if self._credentials is None:
            self._credentials = _botocore("").session.Session().get_credentials()
        if self._credentials is None:
            raise LookupError(NO_CREDENTIALS)
        return self._credentials.get_frozen_credentials()


T = TypeVar("T")

class BedrockProvider(InputTokenCounter):
    kind = "bedrock"

    def __init__(self, client: UpstreamClient, settings: Settings) -> None:
        self._client = client
        self._json_timeout, self._stream_timeout = timeouts(settings)
        self._signer = _Signer()
        self._refused = bedrock_betas.RefusedBetas()

    @staticmethod
    def _url(target: Target, model: str, action: str) -> str:
        # Model ids hold ':' and ARNs hold '/': percent-encoded, and sent exactly so (the signature covers it).
        return f"{target.base_url.rstrip('/')}/model/{quote(model, safe='')}/{action}"

    async def _post(self, target: Target, url: str, payload: bytes) -> Body:
        headers = await self._signer.headers(target, url, payload, "application/json")
        data, _raw = await post_for_object(self._client, target, url, payload, headers,
                                           self._json_timeout)
        return data

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        if op == "embeddings":
            return await self._embed(target, body)
        _only_chat(op)
        url = self._url(target, target.model, "converse")
        data, out = await self._fitted(target, converse_request(body, target.model),
                                       lambda o: self._post(target, url, orjson.dumps(o.request)))
        try:
            chat, usage = converse_to_chat(data, target.model, int(time.time()), stop_sequences(out.request),
                                          answer_id())
        except SHAPE_ERRORS as exc:
            raise invalid_response(target, f"unexpected Converse response shape: {exc}") from None
        return JsonResult(body=chat, usage=usage, dropped=out.dropped)

    async def _fitted(self, target: Target, out: Outbound,
                      send: Callable[[Outbound], Awaitable[T]]) -> tuple[T, Outbound]:
        """`send(out)`; a call Bedrock refuses for the client's betas (a value this model does not
        take) is sent again once without them, and the model's next calls go without them for a
        while (bedrock_betas.RefusedBetas); what was sent, with the betas named as dropped."""
        now = time.monotonic()
        if self._refused.known(target.model, now):
            out = bedrock_betas.without(out)
            return await send(out), out
        try:
            return await send(out), out
        except UpstreamFailure as failure:
            fewer = bedrock_betas.without(out)
            if fewer is out or not bedrock_betas.refused(failure.status, failure.message):
                raise
            self._refused.add(target.model, now)
            return await send(fewer), fewer

    async def count_input_tokens(self, target: Target, body: Body) -> int | None:
        """Bedrock's CountTokens on the Converse request the chat request becomes (what Converse
        would bill as input); None for a model Bedrock cannot count (it answers 400)."""
        request = converse_request(body, target.model).request
        tokens = {k: request[k] for k in ("messages", "system", "toolConfig", "additionalModelRequestFields")
                  if k in request}
        try:
            data = await self._post(target, self._url(target, target.model, "count-tokens"),
                                    orjson.dumps({"input": {"converse": tokens}}))
        except UpstreamFailure as failure:
            if failure.status == 400:
                return None
            raise
        count = data.get("inputTokens")
        if not isinstance(count, int) or isinstance(count, bool):
            raise invalid_response(target, f"unexpected CountTokens response: {str(data)[:200]}")
        return count

    async def _embed(self, target: Target, body: Body) -> JsonResult:
        url = self._url(target, target.model, "invoke")
        answers = await asyncio.gather(*(self._post(target, url, p) for p in titan_requests(body, target.model)))
        try:
            vectors = [list(a["embedding"]) for a in answers]
            tokens = sum(int(a["inputTextTokenCount"]) for a in answers)
        except SHAPE_ERRORS as exc:
            raise invalid_response(target, f"unexpected Titan response shape: {exc}") from None
        out, usage = embeddings_response(vectors, target.model, tokens, body.get("encoding_format"))
        return JsonResult(body=out, usage=usage)

    async def stream(self, op: Operation, target: Target, body: Body) -> BedrockChunkStream:
        _only_chat(op)
        url = self._url(target, target.model, "converse-stream")

        async def opened(o: Outbound) -> UpstreamResponse:
            payload = orjson.dumps(o.request)
            headers = await self._signer.headers(target, url, payload, "application/vnd.amazon.eventstream")
            return await open_event_stream(self._client, target, url, payload, headers, self._stream_timeout)

        resp, out = await self._fitted(target, converse_request(body, target.model), opened)
        translator = ConverseStreamTranslator(target.model, int(time.time()), stop_sequences(out.request),
                                              answer_id())
        stream = BedrockChunkStream(resp, target, translator, out.dropped, self._signer.library(target.deployment))
        await stream.prime()
        return stream


def _only_chat(op: Operation) -> None:
    if op != "chat":
        raise InvalidRequest(f"Bedrock models serve chat completions and embeddings, not {op}; "
                             "use /v1/chat/completions")


class BedrockChunkStream(TranslatedChunkStream[ConverseStreamTranslator, Any]):
    """OpenAI chunks from one ConverseStream response (AWS event-stream binary frames, decoded by
    botocore; it ends with the `metadata` event)."""

    def __init__(self, resp: UpstreamResponse, target: Target, translator: ConverseStreamTranslator,
                 dropped: Sequence[str] = (), bc: Any = None) -> None:
        super().__init__(resp, target, translator, dropped)
        self._bc = bc if bc is not None else _botocore(target.deployment)
        # (binary frames, each bounded by its prelude: botocore refuses a payload over 24 MiB)
        resp.binary()
        self._buffer = self._bc.eventstream.EventStreamBuffer()

    def _events(self, raw: bytes) -> list[Any]:
        self._buffer.add_data(raw)
        try:
            return list(self._buffer)
        except self._bc.eventstream.ParserError as exc:
            raise invalid_response(self._target, f"bad event-stream frame: {exc}") from None

    def _ended(self) -> bool:
        return self._translator.done

    def _close(self) -> list[Body]:
        raise invalid_response(self._target, "the event stream ended before its metadata event")

    def _translate(self, message: Any) -> list[Body]:
        headers: Mapping[str, Any] = message.headers
        payload: bytes = message.payload
        parsed = event_object(self._target, payload) if payload else {}
        if headers.get(":message-type") == "exception":
            raise stream_exception(str(headers.get(":exception-type")), parsed)
        if headers.get(":message-type") == "error":
            raise stream_exception(str(headers.get(":error-code")), {"message": headers.get(":error-message")})
        try:
            return self._translator.feed(str(headers.get(":event-type")), parsed)
        except SHAPE_ERRORS as exc:
            raise invalid_response(self._target, f"unexpected stream event shape: {exc}") from None
