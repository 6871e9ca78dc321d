"""Hosted tools an upstream runs and bills per use without counting the uses in its usage: read
from the answer itself. Pure.

OpenAI's Responses API puts each hosted tool call in the response's `output`: a `web_search_call`
item per search ($10 per 1,000 calls), a `file_search_call` item per file search ($2.50 per 1,000),
and a `code_interpreter_call` item naming the container it ran in (`container_id`; billed per
container session, $0.03 for the default size, however many calls run in it: see
usage/container_sessions.py).

Gemini's grounding with Google Search says what it searched in each candidate's
`groundingMetadata.webSearchQueries`. Google bills Gemini 3 per search query ($14 per 1,000) and
earlier models per grounded prompt ($35 per 1,000): an answer of those counts once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shieldes.providers.base import TokenUsage


def openai_hosted(output: Any) -> tuple[int, int, frozenset[str]]:
    """(web searches, file searches, the ids of the containers code ran in) of a Responses object's
    `output` items."""
    if not isinstance(output, list):
        return 0, 0, frozenset()
    web = files = 0
    containers: set[str] = set()
    for item in output:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "web_search_call":
            web += 1
        elif kind == "file_search_call":
            files += 1
        elif kind == "code_interpreter_call" and isinstance(item.get("container_id"), str):
            containers.add(item["container_id"])
    return web, files, frozenset(containers)


def gemini_grounding(resp: Any) -> int:
    """The grounding searches a generateContent answer (or stream event) is billed for: its distinct
    search queries (Gemini 3, by the answer's `modelVersion`), or 1 for a grounded answer of an
    earlier model; 0 without grounding."""
    if not isinstance(resp, dict) or not isinstance(resp.get("candidates"), list):
        return 0
    queries: set[str] = set()
    for cand in resp["candidates"]:
        meta = cand.get("groundingMetadata") if isinstance(cand, dict) else None
        asked = meta.get("webSearchQueries") if isinstance(meta, dict) else None
        if isinstance(asked, list):
            queries.update(q for q in asked if isinstance(q, str))
    if not queries:
        return 0
    version = resp.get("modelVersion")
    per_query = isinstance(version, str) and not version.startswith(("gemini-1", "gemini-2"))
    return len(queries) if per_query else 1


def with_searches(usage: TokenUsage, searches: int) -> TokenUsage:
    return usage._replace(web_search_requests=searches) if searches > usage.web_search_requests else usage


def with_hosted(usage: TokenUsage, output: Any, sessions: Callable[[frozenset[str]], int] = len) -> TokenUsage:
    """`usage` with the hosted tool uses of `output` (a count the upstream's usage already gives,
    Claude's web searches through a translation, is kept). `sessions`: how many of the containers
    code ran in are billed now (ContainerSessions.bill: those not billed in their current session;
    every one by default)."""
    web, files, ids = openai_hosted(output)
    containers = sessions(ids) if ids else 0
    if not (web or files or containers):
        return usage
    return usage._replace(web_search_requests=max(usage.web_search_requests, web),
                   file_search_calls=max(usage.file_search_calls, files), containers=max(usage.containers, containers))


# What a budget holds for each hosted search tool a request offers without a bound of its own
# (Anthropic's max_uses, the Responses API's max_tool_calls): the uses are known only from the answer
USES_HELD = 5
_MARKERS = (b"web_search", b"file_search", b"code_interpreter", b"google_search", b"googleSearch")


def may_offer(tools: bytes) -> bool:
    """Whether a request's `tools` (as its JSON bytes) may name a hosted tool billed per use: the
    cheap test before decoding them."""
    return any(m in tools for m in _MARKERS)


def _bound(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def bounded_searches(tools: Any) -> list[Any] | None:
    """`tools` with `max_uses` = USES_HELD on each of Anthropic's web search tools that names none:
    the uses a budget holds for it, sent as their bound so that no answer searches past the hold.
    None when there is nothing to bound."""
    if not isinstance(tools, list):
        return None
    out, changed = [], False
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("type"), str) and tool["type"].startswith("web_search_2") \
                and tool.get("max_uses") is None:
            tool, changed = {**tool, "max_uses": USES_HELD}, True
        out.append(tool)
    return out if changed else None


def held_uses(tools: Any, model: str, max_tool_calls: Any = None) -> tuple[int, int, int]:
    """(web searches, file searches, containers) a budget holds for the hosted tools `tools`
    offers, on every API's wording: OpenAI's `web_search*` and Anthropic's `web_search_*` tools
    (their `max_uses`, else USES_HELD each), `file_search` (USES_HELD), `code_interpreter` (one
    container each), Gemini's `google_search` (one grounded prompt for Gemini 1.x and 2.x, which
    bill per prompt, else USES_HELD queries). A Responses request's `max_tool_calls` bounds every
    count, and is what a search naming no bound of its own may run: held in place of USES_HELD (as
    a request's own max_output_tokens is held). Settlement bills what the answer used, so a hold
    above it is handed back."""
    if not isinstance(tools, list):
        return 0, 0, 0
    calls = _bound(max_tool_calls)
    each = USES_HELD if calls is None else calls  # a search's uses, where nothing else bounds them
    web = files = containers = 0
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        if isinstance(kind, str) and kind.startswith("web_search"):
            most = _bound(tool.get("max_uses"))
            web += each if most is None else most
        elif kind == "file_search":
            files += each
        elif kind == "code_interpreter":
            containers += 1
        elif any(k in tool for k in ("google_search", "googleSearch", "google_search_retrieval",
                                     "googleSearchRetrieval")):
            web += 1 if model.startswith(("gemini-1", "gemini-2")) else USES_HELD
    if calls is not None:
        web, files, containers = min(web, calls), min(files, calls), min(containers, calls)
    return web, files, containers
