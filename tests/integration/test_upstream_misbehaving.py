"""Upstreams that answer badly, for every provider kind, through a real node and each client API's
own client (the openai SDK for chat and Responses, the anthropic SDK for Messages, HTTP for the
Gemini API): a non-JSON 200, an HTML error page, an empty body, JSON without the fields a
translation reads, usage of the wrong types; a stream cut inside an event, holding a garbage event
(a Bedrock frame with a bad CRC or prelude), or ending cleanly before its final events. The client
gets an error in its API's shape that names the deployment and says what to do (never a 500 nor a
hang), the node serves the next request, no reservation is left, and usage is what the docs say:
nothing for an answer that never came, an estimate for a stream cut after it began or usage of the
wrong types (docs/gateway.md, Usage accounting)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shieldes.projections.shared_commands import AddProvider
from tests import fake_wire as wire
from tests.fake_bedrock import FakeBedrock
from tests.fake_google import FakeGoogle, service_account
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, Harness, harness

BEDROCK_KEY_ENV, GEMINI_KEY_ENV = "SHIELDES_TEST_MB_BEDROCK", "SHIELDES_TEST_MB_GEMINI"
CLIENTS = ("chat", "messages", "responses", "gemini")
HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
# One body no translation can read: no choices, content, output or candidates
SHAPELESS = json.dumps({"id": "x-1", "object": "chat.completion", "type": "message", "model": "m"}).encode()
# A well-formed answer in every shape FakeUpstream and FakeGoogle speak, its usage of the wrong types
BAD_USAGE = json.dumps({
    "id": "chatcmpl-bad", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "four words of answer"},
                 "finish_reason": "stop"}],
    "type": "message", "role": "assistant", "content": [{"type": "text", "text": "four words of answer"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "status": "completed", "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                                      "content": [{"type": "output_text", "text": "four words of answer",
                                                   "annotations": []}]}],
    "candidates": [{"content": {"role": "model", "parts": [{"text": "four words of answer"}]},
                    "finishReason": "STOP", "index": 0}],
    "usage": {"prompt_tokens": "7", "completion_tokens": None, "total_tokens": [1],
              "input_tokens": "7", "output_tokens": {"n": 4}},
    "usageMetadata": {"promptTokenCount": "7", "candidatesTokenCount": None},
}).encode()
BEDROCK_BAD_USAGE = json.dumps({
    "output": {"message": {"role": "assistant", "content": [{"text": "four words of answer"}]}},
    "stopReason": "end_turn", "usage": {"inputTokens": "7", "outputTokens": None}}).encode()

ANSWERS = {
    "not_json": wire.Answer(200, b"upstream says: all good", "text/plain"),
    "html_502": wire.Answer(502, HTML, "text/html"),
    "html_200": wire.Answer(200, HTML, "text/html"),
    "empty": wire.Answer(200, b""),
    "shapeless": wire.Answer(200, SHAPELESS),
}
FAULTS = (*ANSWERS, "bad_usage", *wire.MANGLES)


@dataclass
class Kind:
    name: str  # the deployment's name
    model: str
    up: Any  # the fake it calls
    mangles: tuple[str, ...] = wire.MANGLES


@dataclass
class Outcome:
    status: int | None = None  # the HTTP status of an error answer
    body: Any = None  # its JSON body
    events: list[Any] | None = None  # a stream's events (or chunks), parsed
    error: str = ""  # what the client raised or the stream's last event said


@pytest.fixture
def private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def _node(database_url: str, kind: str, google: FakeGoogle, bedrock: FakeBedrock,
                account: Path) -> AsyncIterator[tuple[Harness, Kind]]:
    async with harness(database_url, providers=False, upstream_retries=0) as h:
        ref = "env:" + UPSTREAM_KEY_ENV
        os.environ[BEDROCK_KEY_ENV], os.environ[GEMINI_KEY_ENV] = bedrock.api_key, google.api_key
        vertex = {"project": "proj-1", "location": "us-east5", "credentials_file": str(account)}
        add, k = {
            "openai": (AddProvider("oai", "openai", h.upstream.url, ref, ("gpt-4o",)),
                       Kind("oai", "gpt-4o", h.upstream)),
            "anthropic": (AddProvider("ant", "anthropic", h.upstream.url, ref, ("claude-3-5-haiku-latest",)),
                          Kind("ant", "claude-3-5-haiku-latest", h.upstream)),
            "azure": (AddProvider("az", "azure", h.upstream.url, ref, ("prod-gpt4o",),
                                  options={"api_version": "2024-10-21"}), Kind("az", "prod-gpt4o", h.upstream)),
            "bedrock": (AddProvider("br", "bedrock", bedrock.url, "env:" + BEDROCK_KEY_ENV,
                                    ("anthropic.claude-3-5-sonnet-20240620-v1:0",), options={"region": "us-east-1"}),
                        Kind("br", "anthropic.claude-3-5-sonnet-20240620-v1:0", bedrock, (*wire.MANGLES, "prelude"))),
            "gemini": (AddProvider("gem", "gemini", google.url + "/v1beta", "env:" + GEMINI_KEY_ENV,
                                   ("gemini-2.5-flash",)), Kind("gem", "gemini-2.5-flash", google)),
            "vertex": (AddProvider("vtx", "vertex", google.url, None, ("gemini-2.5-pro",), options=vertex),
                       Kind("vtx", "gemini-2.5-pro", google)),
            "vertex-claude": (AddProvider("vtxc", "vertex", google.url, None, ("claude-sonnet-4-5@20250929",),
                                          options=vertex), Kind("vtxc", "claude-sonnet-4-5@20250929", google)),
        }[kind]
        await h.admin(add)
        await h.sync()
        yield h, k


def _inject(k: Kind, fault: str) -> None:
    """The next call of `k`'s deployment misbehaves as `fault` says."""
    answer = ANSWERS.get(fault) or wire.Answer(200, BEDROCK_BAD_USAGE if isinstance(k.up, FakeBedrock) else BAD_USAGE) \
        if fault not in wire.MANGLES and fault != "prelude" else None
    if isinstance(k.up, FakeBedrock | FakeGoogle):
        if answer:
            k.up.answers.append(answer)
        else:
            k.up.mangle = fault
    elif answer:
        k.up.inject("*", answer=answer)
    else:
        k.up.inject("*", mangle=fault)


async def _call(h: Harness, secret: str, client: str, model: str, stream: bool) -> Outcome:
    """One request the way `client`'s API makes it; what came back."""
    timeout = 15.0
    events: list[Any] = []  # a stream's, as they came (kept when the client raises at its error)
    try:
        if client == "chat":
            oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=timeout)
            if not stream:
                return Outcome(body=(await oai.chat.completions.create(model=model, messages=[
                    {"role": "user", "content": "say hello"}])).model_dump())
            got = await oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "say hello"}],
                                                    stream=True, stream_options={"include_usage": True})
            async for c in got:
                events.append(c.model_dump())
            return Outcome(events=events)
        if client == "responses":
            oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=timeout)
            if not stream:
                return Outcome(body=(await oai.responses.create(model=model, input="say hello")).model_dump())
            async for e in await oai.responses.create(model=model, input="say hello", stream=True):
                events.append(e.model_dump())
            last = events[-1] if events else {}
            failed = last.get("type") in ("response.failed", "error")
            return Outcome(events=events, error=json.dumps(last) if failed else "")
        if client == "messages":
            claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0, timeout=timeout)
            if not stream:
                return Outcome(body=(await claude.messages.create(model=model, max_tokens=64, messages=[
                    {"role": "user", "content": "say hello"}])).model_dump())
            got = await claude.messages.create(model=model, max_tokens=64, stream=True,
                                               messages=[{"role": "user", "content": "say hello"}])
            async for e in got:
                events.append(e.model_dump())
            return Outcome(events=events)
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        return Outcome(status=exc.status_code, body=exc.body, error=str(exc.message), events=events)
    except (openai.APIError, anthropic.APIError) as exc:  # an error event in a stream
        return Outcome(events=events, body=exc.body, error=str(exc.message))
    except ValueError as exc:  # the client could not parse what it got
        return Outcome(status=-1, error=f"the client could not parse the answer: {exc}", events=events)
    # the Gemini API, over HTTP
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, http.post(
            f"{h.base}/v1beta/models/{model}:{method}", headers={"x-goog-api-key": secret},
            json={"contents": [{"role": "user", "parts": [{"text": "say hello"}]}]}) as r:
        raw = await r.read()
    if r.status != 200:
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode()
        err = body.get("error") if isinstance(body, dict) else None
        return Outcome(status=r.status, body=body, error=str(err.get("message", "")) if isinstance(err, dict)
                       else str(body))
    if not stream:
        try:
            return Outcome(body=json.loads(raw))
        except ValueError:
            return Outcome(status=-1, body=raw.decode("utf-8", "replace"), error=f"not JSON: {raw!r}")
    try:
        events = [json.loads(e.strip()[6:]) for e in raw.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
    except ValueError:
        return Outcome(status=-1, body=raw.decode("utf-8", "replace"), error=f"a stream not of JSON events: {raw!r}")
    last = events[-1] if events else {}
    return Outcome(events=events, error=json.dumps(last["error"]) if "error" in last else "")


def _problems(client: str, stream: bool, fault: str, k: Kind, got: Outcome) -> list[str]:
    """What is wrong with `got`, the outcome of a call that met `fault`."""
    if fault == "bad_usage":  # a readable answer: served, its usage estimated
        if got.status is not None or got.error:
            return [f"refused a readable answer: {got.status} {got.error}"]
        return []
    if got.status is None and not got.error:
        return ["succeeded"]
    problems = []
    if got.status is not None and not (stream and got.status == 200):  # (200: an error event in the stream)
        if got.status not in (502, 503, 504):
            problems.append(f"status {got.status}")
        body = got.body if isinstance(got.body, dict) else {}
        # the openai SDK gives the `error` object of OpenAI's shape, the anthropic SDK the whole body
        err = body if client in ("chat", "responses") else body.get("error")
        if client == "messages" and body.get("type") != "error":
            problems.append(f"not Anthropic's shape: {body}")
        if not isinstance(err, dict) or not {"message", "status" if client == "gemini" else "type"} <= set(err):
            problems.append(f"not {client}'s error shape: {body}")
    message = got.error.lower()
    if repr(k.name) not in got.error and k.name not in message:
        problems.append(f"the deployment is not named: {got.error!r}")
    if not any(w in message for w in ("retry", "try again", "check", "send it again")):
        problems.append(f"says nothing to do: {got.error!r}")
    if "traceback" in message or "internal_error" in json.dumps(got.body or {}):
        problems.append("internal error")
    return problems


def _name(client: str, stream: bool, fault: str) -> str:
    return f"{client}/{'stream' if stream else 'json'}/{fault}"


def _content_events(client: str, got: Outcome) -> int:
    """How many events with generated text the client got before the error."""
    kinds = {"chat": lambda e: any((c.get("delta") or {}).get("content") for c in e.get("choices") or []),
             "messages": lambda e: e.get("type") == "content_block_delta",
             "responses": lambda e: e.get("type") == "response.output_text.delta",
             "gemini": lambda e: bool(e.get("candidates"))}
    return sum(1 for e in got.events or [] if kinds[client](e))


def _billing_problems(name: str, relayed: int, row: tuple[int, int, int, int] | None) -> list[str]:
    """What the usage log holds of a case against docs/gateway.md (Usage accounting): nothing for an
    answer that never came, an estimate for a readable answer with usage of the wrong types (output
    never 0 when text came back) or for a stream broken after it began (one token per chunk relayed,
    or what the upstream had reported if more)."""
    fault = name.rsplit("/", 1)[1]
    requests, prompt, completion, _cost = row or (0, 0, 0, 0)
    if fault == "bad_usage":
        return [] if requests == 1 and prompt > 0 and completion > 0 else [f"billed {row} for a readable answer"]
    if fault in ANSWERS or (row is None and not relayed):  # (a stream broken before it began: as no answer)
        return [] if completion == 0 else [f"billed {row} for no answer"]
    # (the estimate counts the opening chunk a translation sends before any text, too)
    if requests == 1 and relayed <= completion <= relayed + 1:
        return []
    return [f"billed {row} after {relayed} content events"]


PROVIDERS = ("openai", "anthropic", "azure", "bedrock", "gemini", "vertex", "vertex-claude")


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_a_misbehaving_upstream_gets_each_client_a_clear_error(
        kind: str, database_url: str, private: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    account = tmp_path / "sa.json"
    async with FakeGoogle(public_key=private.public_key()) as google, FakeBedrock() as bedrock:
        account.write_text(json.dumps(service_account(private, google.url + "/token")))
        nodes = _node(database_url, kind, google, bedrock, account)
        h, k = await anext(nodes)
        try:
            cases = [(client, stream, fault) for client in CLIENTS for stream in (False, True)
                     for fault in (*ANSWERS, *(k.mangles if stream else ("bad_usage",)))]
            keys = {case: await h.create_key(_name(*case)) for case in cases}  # one key a case: its usage apart
            healthy_key = await h.create_key("healthy")
            await h.sync()
            report, relayed = [], {}
            for client, stream, fault in cases:
                _inject(k, fault)
                got = await _call(h, keys[client, stream, fault], client, k.model, stream)
                relayed[_name(client, stream, fault)] = _content_events(client, got)
                report += [f"{_name(client, stream, fault)}: {p}" for p in _problems(client, stream, fault, k, got)]
                assert h.node.meter is not None
                if any(v for v in h.node.meter.reserved().values()):
                    report.append(f"{_name(client, stream, fault)}: a reservation is left")
                healthy = await _call(h, healthy_key, client, k.model, stream)
                if healthy.status is not None or healthy.error:
                    report.append(f"{_name(client, stream, fault)}: the next call failed: {healthy.error}")
            await h.flush()
            usage = h.usage_totals()
            for name, events in relayed.items():
                report += [f"{name}: {p}" for p in _billing_problems(name, events, usage.get(name))]
            assert not report, "\n".join(report)
            if kind == "bedrock":  # a Bedrock API key goes as a bearer token, and nothing is signed
                assert bedrock.requests and all(
                    {k.lower(): v for k, v in r.headers.items()}.get("authorization") == "Bearer " + bedrock.api_key
                    and not any(k.lower() == "x-amz-date" for k in r.headers) for r in bedrock.requests)
        finally:
            await nodes.aclose()
