"""A client's `anthropic-beta` values on their way to Claude on Bedrock, which takes them as
`anthropic_beta` in Converse's additionalModelRequestFields. Bedrock refuses the whole call for a
value it does not know ("invalid beta flag"), and clients send Anthropic's own ones too (Claude
Code: `claude-code-20250219`, `prompt-caching-scope-2026-01-05`), so only the values Bedrock
documents go; the rest are named in x-shieldes-dropped. Which of those a model takes is Bedrock's
to say: a call it refuses for them goes again without any (RefusedBetas remembers the model)."""

from __future__ import annotations

from typing import Any

from shieldes.providers.dropped import Outbound

# The chat request field a Messages request's `anthropic-beta` header travels in to the Bedrock
# translation (a list of values); also read from a chat client's own request.
FIELD = "anthropic_beta"
DROPPED_PREFIX = "anthropic-beta: "

# The values Bedrock's Claude models take (Bedrock user guide, Anthropic Claude Messages API:
# `anthropic_beta`); which model takes which is Bedrock's to say.
KNOWN = frozenset({
    "computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14", "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14", "context-1m-2025-08-07", "context-management-2025-06-27",
    "effort-2025-11-24", "tool-search-tool-2025-10-19", "tool-examples-2025-10-29",
})


def header_values(header: str | None) -> list[str]:
    """The values of an `anthropic-beta` header (comma separated; the SDKs send one header)."""
    return [v.strip() for v in (header or "").split(",") if v.strip()]


def split(values: Any, claude: bool) -> tuple[list[str], list[str]]:
    """(the values to send, the x-shieldes-dropped names of the others) of a chat request's
    `anthropic_beta`; a model other than Claude takes none."""
    if not isinstance(values, list):
        return [], []
    unique = list(dict.fromkeys(v for v in values if isinstance(v, str) and v))
    kept = [v for v in unique if claude and v in KNOWN]
    return kept, [DROPPED_PREFIX + v for v in unique if v not in kept]


def refused(status: int | None, message: str) -> bool:
    """Whether Bedrock refused a call for its `anthropic_beta` ("invalid beta flag": a value this
    model does not take, e.g. effort-2025-11-24 on a model without effort)."""
    return status == 400 and "beta" in message.lower()


def without(out: Outbound) -> Outbound:
    """`out` without its `anthropic_beta`, each value named as dropped; `out` itself when it has none."""
    extra = out.request.get("additionalModelRequestFields")
    if not isinstance(extra, dict) or "anthropic_beta" not in extra:
        return out
    rest = {k: v for k, v in extra.items() if k != "anthropic_beta"}
    request = {k: v for k, v in out.request.items() if k != "additionalModelRequestFields"}
    if rest:
        request["additionalModelRequestFields"] = rest
    return Outbound(request, [*out.dropped, *(DROPPED_PREFIX + v for v in extra["anthropic_beta"])])


# How long a model whose call Bedrock refused for its betas gets none before one call tries again.
REMEMBER_REFUSED = 3600.0
MAX_REMEMBERED = 1000  # models


class RefusedBetas:
    """The models Bedrock refused betas for, for REMEMBER_REFUSED seconds: later calls go without
    them at once instead of each paying a refused call first (Claude Code sends the same betas with
    every request). One per provider; `now` is a monotonic clock."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def known(self, model: str, now: float) -> bool:
        return self._until.get(model, 0.0) > now

    def add(self, model: str, now: float) -> None:
        if len(self._until) >= MAX_REMEMBERED:
            self._until = {k: t for k, t in self._until.items() if t > now}
            if len(self._until) >= MAX_REMEMBERED:
                self._until.clear()
        self._until[model] = now + REMEMBER_REFUSED
