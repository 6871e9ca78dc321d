"""What of a chat client's request OpenAI's own API and Azure OpenAI refuse though other
OpenAI-compatible servers (vLLM, Ollama, LM Studio, ...) take it, as LiteLLM's clients send it:
`top_k` ("Unrecognized request argument supplied: top_k") is left out and named; Anthropic-style
`thinking: {"type": "enabled", "budget_tokens": N}` becomes the `reasoning_effort` of the same
budget on a reasoning model (as a Messages client's does: anthropic_inbound.reasoning_effort) and
is left out and named on any other, or left out unnamed beside a `reasoning_effort` of the
client's own (the effort says it) or when it asks for nothing (`disabled`). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shieldes.providers.anthropic_inbound import reasoning_effort
from shieldes.providers.base import Body
from shieldes.providers.chat_parts import reasoning_model
from shieldes.providers.http import is_azure

OPENAI_HOSTS = ("api.openai.com",)
STRICT_OPS = frozenset({"chat", "completions"})
TOP_K, THINKING, EFFORT = "top_k", "thinking", "reasoning_effort"
MARKS = (b'"top_k"', b'"thinking"')  # a body without either needs no look at its fields
ABSENT: Any = object()  # what a field getter gives for a field the request does not have


def openai_itself(base_url: str) -> bool:
    """Whether a deployment's base URL is OpenAI's own API or Azure OpenAI's."""
    return (urlsplit(base_url).hostname or "") in OPENAI_HOSTS or is_azure(base_url)


@dataclass(frozen=True, slots=True)
class Refit:
    """The client's request as OpenAI itself takes it: `changes` set, `drop` left out, `named` the
    x-shieldes-dropped names (what the client asked for and does not get)."""

    changes: Body
    drop: frozenset[str]
    named: tuple[str, ...]


def refit(model: str, field: Callable[[str], Any]) -> Refit | None:
    """How a request for `model` (the upstream's model, or Azure's deployment name) is fitted for
    OpenAI itself; `field(name)`: the client's value of a top-level field, or ABSENT. None: as sent."""
    drop: list[str] = []
    named: list[str] = []
    changes: Body = {}
    if field(TOP_K) is not ABSENT:
        drop.append(TOP_K)
        named.append(TOP_K)
    thinking = field(THINKING)
    if thinking is not ABSENT:
        drop.append(THINKING)
        effort = reasoning_effort(thinking)  # (None: disabled, null, or not a thinking setting)
        if effort is not None and field(EFFORT) in (ABSENT, None):
            if reasoning_model(model):
                changes[EFFORT] = effort
            else:
                named.append(THINKING)
    return Refit(changes, frozenset(drop), tuple(named)) if drop else None
