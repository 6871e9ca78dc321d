"""The options of a Responses request beyond input and tools, for upstreams that only speak chat
completions: `include`, `prompt_cache_key`, `service_tier`, `top_logprobs`. What chat completions
takes under the same name is passed on; `include` entries are honoured where translation can fill
them (output text logprobs), accepted where there is nothing to fill (the hosted tools they concern
are left out; input images are stored as sent), and named in a response header where translation
cannot produce them (`reasoning.encrypted_content`: a chat server returns no encrypted reasoning;
Claude's signed thinking fills it on Anthropic and Bedrock, see signed_reasoning) or does not know
them (entries OpenAI added later).
Pure."""

from __future__ import annotations

from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.responses.objects import ENCRYPTED, Body

LOGPROBS = "message.output_text.logprobs"
# include entries with nothing to fill under translation: the hosted tools they concern are left
# out (see responses_tools), and input images are kept in the stored input as they were sent.
_NOTHING_TO_FILL = frozenset({"web_search_call.action.sources", "web_search_call.results",
                              "code_interpreter_call.outputs", "computer_call_output.output.image_url",
                              "file_search_call.results", "message.input_image.image_url"})
# include entries translation cannot produce: the answer comes without them (named in a header).
UNFILLED = frozenset({ENCRYPTED})
_KNOWN = _NOTHING_TO_FILL | UNFILLED | {LOGPROBS}


def _include(body: Body) -> list[str]:
    value = body.get("include")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest("field 'include' must be a list of strings, e.g. [\"message.output_text.logprobs\"]",
                             param="include")
    return list(value)


def chat_options(body: Body) -> Body:
    """The chat completions fields for a Responses request's options (validating `include`)."""
    include = _include(body)
    out: Body = {}
    for key in ("prompt_cache_key", "service_tier"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"field {key!r} must be a non-empty string", param=key)
        out[key] = value
    top = body.get("top_logprobs")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20):
        raise InvalidRequest("field 'top_logprobs' must be an integer from 0 to 20", param="top_logprobs")
    if LOGPROBS in include or top:
        out["logprobs"] = True
        if top:
            out["top_logprobs"] = top
    return out


def unfilled_includes(body: Body, signed_thinking: bool = False) -> list[str]:
    """The requested `include` entries the answer will lack: those translation cannot produce, and
    those it does not know (OpenAI adds entries; a client sending a new one is served, not refused).
    `signed_thinking`: the upstream signs its thinking, which fills reasoning.encrypted_content."""
    value = body.get("include")
    if not isinstance(value, list):
        return []
    filled = {ENCRYPTED} if signed_thinking else set()
    return sorted({v for v in value if (v in UNFILLED or v not in _KNOWN) and v not in filled})


def _logprob(entry: Any) -> Body | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        return None
    return {"token": entry["token"], "logprob": float(entry.get("logprob") or 0.0),
            "bytes": entry["bytes"] if isinstance(entry.get("bytes"), list) else list(entry["token"].encode())}


def output_logprobs(choice: Any) -> list[Body]:
    """A chat choice's (or stream chunk choice's) `logprobs.content` as Responses output_text
    logprobs: the same token, logprob, bytes and top_logprobs."""
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    out = []
    for entry in content if isinstance(content, list) else []:
        item = _logprob(entry)
        if item is not None:
            tops = entry.get("top_logprobs")
            item["top_logprobs"] = [t for t in map(_logprob, tops if isinstance(tops, list) else []) if t]
            out.append(item)
    return out
