"""The top-level request fields each real API takes, as the official SDKs' request types list them
(openai-python: chat/completion_create_params, completion_create_params, embedding_create_params,
responses/response_create_params; anthropic-sdk-python: message_create_params, its beta twin and
message_count_tokens_params), and the 400 each answers for any other: a gateway that forwards a
field of its own, or of another gateway, fails here as it would there.

    refusal("/v1/chat/completions", body)   # None, or the real API's 400 for the first unknown field
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests import fake_wire as wire

_CHAT = frozenset((
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store",
    "stream", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
    "verbosity", "web_search_options",
    "data_sources",  # Azure OpenAI's "On your data" extension, taken on its chat paths
))
_COMPLETIONS = frozenset((
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
    "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user",
))
_EMBEDDINGS = frozenset(("input", "model", "dimensions", "encoding_format", "user"))
_RESPONSES = frozenset((
    "access_programs", "background", "background_options", "context_management", "conversation", "image",
    "include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata", "model", "moderation",
    "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store", "stream",
    "stream_options", "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation",
    "user",
    "client_metadata",  # Codex CLI's (installation, session, turn ids): OpenAI takes it, the SDK types omit it
))
# /v1/responses/input_tokens takes the request's input side, not how it is served or stored
_INPUT_TOKENS = frozenset((
    "model", "input", "instructions", "conversation", "previous_response_id", "parallel_tool_calls",
    "reasoning", "text", "tool_choice", "tools", "truncation",
))
# Messages: the stable fields, the beta ones (sent with their anthropic-beta value) and the sampling
# fields older models take (temperature, top_k, top_p)
_MESSAGES = frozenset((
    "model", "messages", "max_tokens", "cache_control", "container", "context_management", "diagnostics",
    "inference_geo", "mcp_servers", "metadata", "output_config", "output_format", "service_tier", "speed",
    "stop_sequences", "stream", "system", "temperature", "thinking", "tool_choice", "tools", "top_k", "top_p",
    "user_profile_id", "workspace_id", "compaction",
))
_COUNT_TOKENS = frozenset((
    "model", "messages", "cache_control", "context_management", "mcp_servers", "output_config",
    "output_format", "speed", "system", "thinking", "tool_choice", "tools", "user_profile_id", "workspace_id",
))
_ANTHROPIC_METADATA = frozenset(("user_id",))

FIELDS: dict[str, frozenset[str]] = {
    "/v1/chat/completions": _CHAT, "/v1/completions": _COMPLETIONS, "/v1/embeddings": _EMBEDDINGS,
    "/v1/responses": _RESPONSES, "/openai/v1/responses": _RESPONSES,
    "/v1/responses/input_tokens": _INPUT_TOKENS, "/openai/v1/responses/input_tokens": _INPUT_TOKENS,
    "/v1/messages": _MESSAGES, "/v1/messages/count_tokens": _COUNT_TOKENS,
}


def _known(path: str) -> frozenset[str] | None:
    if path in FIELDS:
        return FIELDS[path]
    if path.startswith("/openai/deployments/"):  # Azure: the OpenAI route after the deployment name
        return FIELDS.get("/v1/" + path.split("/", 4)[-1])
    return None


def unknown(path: str, body: Any, accepted: frozenset[str] = frozenset()) -> list[str]:
    """The fields of `body` the real API at `path` does not take (`accepted`: the test's own
    extension fields), and on Messages the `metadata` keys but `user_id`, as `metadata.X`."""
    known = _known(path)
    if known is None or not isinstance(body, dict):
        return []
    out = [name for name in body if name not in known and name not in accepted]
    meta = body.get("metadata")
    if path == "/v1/messages" and isinstance(meta, dict):
        out += [f"metadata.{k}" for k in meta if k not in _ANTHROPIC_METADATA and f"metadata.{k}" not in accepted]
    return out


def refusal(path: str, body: Any, accepted: frozenset[str] = frozenset()) -> web.Response | None:
    """The real API's 400 for the first field of `body` it does not take, or None."""
    names = unknown(path, body, accepted)
    if not names:
        return None
    name = names[0]
    if path.startswith("/v1/messages"):
        return wire.error(400, f"{name}: Extra inputs are not permitted", True)
    if "/responses" in path:
        return wire.error(400, f"Unknown parameter: '{name}'.", False, code="unknown_parameter")
    return wire.error(400, f"Unrecognized request argument supplied: {name}", False)
