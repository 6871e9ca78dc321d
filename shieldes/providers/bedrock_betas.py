"""A client's `anthropic-beta` values on their way to Claude on Bedrock, which takes them as
`anthropic_beta` in Converse's additionalModelRequestFields. Bedrock refuses the whole call for a
value it does not know ("invalid beta flag"), and clients send Anthropic's own ones too (Claude
Code: `claude-code-20250219`, `prompt-caching-scope-2026-01-05`), so only the values Bedrock
documents go; the rest are named in x-shieldes-dropped. Pure."""

from __future__ import annotations

from typing import Any

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
