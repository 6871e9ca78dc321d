"""POST /v1beta/models/{model}:embedContent and :batchEmbedContents (also under /v1/models/...).

Passed through to `gemini` and `vertex` deployments (the same method at the deployment's model,
the client's body as it is, the answer's bytes back); translated to an OpenAI embeddings call for
any other deployment (gemini_embed). Admitted, billed and logged like POST /v1/embeddings: input
tokens only, the upstream's count when it gives one, else the request's size / 4."""

from __future__ import annotations

import orjson
from aiohttp import web

from shieldes.gateway.call import Call
from shieldes.gateway.gemini_models import model_of, route_for
from shieldes.gateway.messages import Answer
from shieldes.gateway.middleware import REQUEST_ID
from shieldes.gateway.request_fields import read_json
from shieldes.gateway.routes import GATEWAY, authenticate
from shieldes.projections.state import Deployment
from shieldes.providers import gemini_embed
from shieldes.providers.base import Provider, Target, TokenUsage
from shieldes.providers.dropped import dropped_header
from shieldes.providers.gemini_native import EmbedMethod, GenerateContentUpstream, native_payload
from shieldes.usage.tokens import prompt_bytes


async def embed(request: web.Request, method: EmbedMethod) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    model = model_of(request)
    body, raw = await read_json(request, gw.settings.max_body_bytes)
    batch = method == "batchEmbedContents"
    requests = gemini_embed.embed_requests(body, batch)  # bad input: a 400 before admission
    route = route_for(gw, key, model)
    call = Call(gw, request, key, "embeddings", {"model": model}, prompt_bytes(raw), None, route)

    async def answer(provider: Provider, target: Target, dep: Deployment) -> Answer:
        if isinstance(provider, GenerateContentUpstream):
            got = await provider.embed_content(target, method, native_payload(body, raw, target.model))
            return Answer(got.raw, got.usage, dropped_header(got.dropped))
        out, dropped = gemini_embed.openai_embeddings_request(requests, target.model, batch)
        result = await provider.call("embeddings", target, out)
        reply = gemini_embed.google_embeddings(result.body, batch)
        return Answer(orjson.dumps(reply), result.usage, dropped_header(dropped + list(result.dropped)))

    got, served = await call.run(answer)
    usage = got.usage or TokenUsage(call.size // 4, 0)  # what /v1/embeddings bills when nothing is counted
    call.settle(served, TokenUsage(usage.prompt_tokens, 0, usage.cache_read_tokens))
    headers = {"Content-Type": "application/json", REQUEST_ID: call.rid, **call.res.headers, **got.headers}
    return web.Response(body=got.raw, headers=headers)
