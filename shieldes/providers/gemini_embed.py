"""The Gemini API's embedContent and batchEmbedContents as an OpenAI embeddings call and back, for
deployments that do not speak them (gemini_native passes them through to those that do).

A request's text parts become one input each request (several parts of one content are joined
with a newline, as one text); `outputDimensionality` becomes `dimensions`. `taskType`, `title`
and `autoTruncate` have no OpenAI counterpart: named as dropped."""

from __future__ import annotations

import base64
import struct
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body
from shieldes.providers.gemini_inbound import camel_keys

_CARRIED = frozenset({"model", "content", "outputDimensionality"})


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message)


def embed_requests(body: Any, batch: bool) -> list[dict[str, Any]]:
    """The EmbedContentRequests of a call (lowerCamelCase names), checked: one for embedContent,
    the `requests` of batchEmbedContents."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    body = camel_keys(body)
    if not batch:
        return [body]
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests or not all(isinstance(r, dict) for r in requests):
        raise _bad("`requests` must be a non-empty list of EmbedContentRequest objects "
                   "({\"content\": {\"parts\": [{\"text\": ...}]}})")
    return requests


def _text(request: dict[str, Any], where: str) -> str:
    content = request.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise _bad(f"`{where}content.parts` must be a non-empty list of parts")
    texts = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise _bad(f"`{where}content.parts[{i}]` is not a text part: this deployment embeds text only; "
                       "route the model to a `gemini` or `vertex` deployment for other parts")
        texts.append(part["text"])
    return "\n".join(texts)


def openai_embeddings_request(requests: list[dict[str, Any]], model: str, batch: bool) -> tuple[Body, list[str]]:
    """The OpenAI embeddings request for `requests`, and the names of what it could not carry."""
    prefix = "requests[{}]." if batch else ""
    inputs = [_text(r, prefix.format(i)) for i, r in enumerate(requests)]
    dims = {r.get("outputDimensionality") for r in requests}
    out: Body = {"model": model, "input": inputs, "encoding_format": "float"}
    if len(dims) > 1:
        raise _bad("every request of a batch must ask for the same `outputDimensionality` on this deployment; "
                   "send one batch per dimensionality")
    dim = dims.pop()
    if dim is not None:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise _bad("`outputDimensionality` must be a positive integer")
        out["dimensions"] = dim
    named = ("requests[]." if batch else "")
    dropped = sorted({named + k for r in requests for k in r if k not in _CARRIED})
    return out, dropped


def _values(embedding: Any) -> list[float]:
    """An OpenAI embedding's floats (a list, or base64 of little-endian float32 values)."""
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return [float(v) for v in embedding]


def google_embeddings(answer: Body, batch: bool) -> Body:
    """An OpenAI embeddings answer as embedContent's (`embedding`) or batchEmbedContents'
    (`embeddings`, in the requests' order) answer."""
    data = sorted(answer["data"], key=lambda d: int(d.get("index", 0)))
    vectors = [{"values": _values(d["embedding"])} for d in data]
    return {"embeddings": vectors} if batch else {"embedding": vectors[0]}
