"""LiteLLM's public price list (model_prices_and_context_window.json) -> `pricing.set` commands.

Entries give USD per token (`input_cost_per_token`, `output_cost_per_token`, and for prompt caching
`cache_read_input_token_cost`, `cache_creation_input_token_cost`, and the `*_above_200k_tokens` long-context
tier of Gemini Pro and Claude Sonnet); shieldes keeps USD per 1M tokens. The flex and priority prices
(`*_flex`, `*_priority`) become multipliers, the hosted tool prices (`search_context_cost_per_query`,
`file_search_cost_per_1k_calls`, `code_interpreter_cost_per_session`) per-use prices, and the
audio and image token prices (`input_cost_per_audio_token`, `cache_read_input_audio_token_cost`,
`output_cost_per_audio_token`, `input_cost_per_image_token`, `output_cost_per_image_token`)
prices by modality.
Which entries are taken: by default the models this gateway knows (the shipped catalog, prices
already set, models providers and aliases serve), all of them with `everything`, or the listed
`models`. A price equal to the one in force is left alone, so a re-import writes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from shieldes.importers.plan import Plan, price_change
from shieldes.importers.spec import ImportRejected, PriceSpec
from shieldes.projections.commands import check_models
from shieldes.projections.state import ConfigState, LongContext
from shieldes.usage.catalog import shipped

_PRICED_MODES = (None, "chat", "completion", "embedding", "responses")


# LiteLLM field -> PriceSpec field (USD per token in the file, per 1M here)
_FIELDS = (("input_cost_per_token", "input_per_1m"), ("output_cost_per_token", "output_per_1m"),
           ("cache_read_input_token_cost", "cache_read_per_1m"),
           ("cache_creation_input_token_cost", "cache_write_per_1m"))
# LiteLLM field -> modality (state.MODALITIES), USD per token there, per 1M here; LiteLLM has no
# field for cached image tokens
MODALITY_FIELDS = (("input_cost_per_audio_token", "audio_input"),
                   ("cache_read_input_audio_token_cost", "audio_cache_read"),
                   ("output_cost_per_audio_token", "audio_output"), ("input_cost_per_image_token", "image_input"),
                   ("output_cost_per_image_token", "image_output"))


def _per_1m(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImportRejected(f"{where} must be a number >= 0 (USD per token), got {value!r}")
    return round(float(value) * 1_000_000, 9)  # strips float noise: 3e-06 * 1e6 = 2.9999...


# LiteLLM's long-context fields: the prices of every token of a request whose prompt is above 200k
_ABOVE_200K = ("input_cost_per_token_above_200k_tokens", "output_cost_per_token_above_200k_tokens",
               "cache_read_input_token_cost_above_200k_tokens", "cache_creation_input_token_cost_above_200k_tokens")


def _above_200k(sources: Sequence[Mapping[str, Any]], where: str) -> LongContext | None:
    """The long-context tier (above 200k prompt tokens) the file gives, if it gives input and output."""
    found: list[float | None] = []
    for name in _ABOVE_200K:
        src = next((s for s in sources if s.get(name) is not None), None)
        found.append(None if src is None else _per_1m(src[name], f"{where}.{name}"))
    input_, output, read, write = found
    if input_ is None or output is None:
        return None
    return LongContext(200_000, input_, output, read, write)


# The providers whose web searches shieldes counts (Claude's usage, OpenAI Responses'
# web_search_call items, Gemini grounding): their `search_context_cost_per_query` is the per-search price
_SEARCH_PROVIDERS = ("anthropic", "openai", "azure", "gemini", "vertex_ai")


def _usd(value: Any, where: str, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImportRejected(f"{where} must be a number >= 0 (USD per {unit}), got {value!r}")
    return float(value)


def _per_search(sources: Sequence[Mapping[str, Any]], where: str) -> float | None:
    """LiteLLM's `search_context_cost_per_query` (USD per search, by search context size): the
    medium size's, LiteLLM's own default (shieldes has one price per model). Taken from entries of
    the providers whose searches are counted (see _SEARCH_PROVIDERS; a config's litellm_params
    name theirs by the prefix of `model`)."""
    for src in sources:
        found = src.get("search_context_cost_per_query")
        provider = str(src.get("litellm_provider") or str(src.get("model", "")).partition("/")[0])
        if not provider.startswith(_SEARCH_PROVIDERS):
            continue
        if isinstance(found, Mapping) and found.get("search_context_size_medium") is not None:
            return _usd(found["search_context_size_medium"], f"{where}.search_context_cost_per_query", "search")
    return None


def _per_use(sources: Sequence[Mapping[str, Any]], where: str) -> tuple[tuple[str, float], ...]:
    """LiteLLM's hosted tool prices: `file_search_cost_per_1k_calls` (USD per 1,000 file
    searches) as the `file_search` per-use price, `code_interpreter_cost_per_session` (USD per
    container session) as the `container` one."""
    out: dict[str, float] = {}
    for src in sources:
        calls = src.get("file_search_cost_per_1k_calls")
        if calls is not None and "file_search" not in out:
            out["file_search"] = round(_usd(calls, f"{where}.file_search_cost_per_1k_calls", "1,000 calls") / 1000, 9)
        session = src.get("code_interpreter_cost_per_session")
        if session is not None and "container" not in out:
            out["container"] = _usd(session, f"{where}.code_interpreter_cost_per_session", "session")
    return tuple(sorted(out.items()))


def _modalities(sources: Sequence[Mapping[str, Any]], where: str) -> tuple[tuple[str, float], ...]:
    """LiteLLM's audio and image token prices as prices by modality (the first source holding each)."""
    out: dict[str, float] = {}
    for field, kind in MODALITY_FIELDS:
        value = next((src[field] for src in sources if src.get(field) is not None), None)
        if value is not None:
            out[kind] = _per_1m(value, f"{where}.{field}")
    return tuple(sorted(out.items()))


def _tier_multipliers(sources: Sequence[Mapping[str, Any]], where: str) -> tuple[tuple[str, float], ...]:
    """The flex and priority prices (`input_cost_per_token_flex`, `..._priority`: OpenAI's, Vertex
    AI's Priority PayGo) as multipliers of the standard input price, to 6 places (the rates they scale round to the list
    prices exactly)."""
    out: list[tuple[str, float]] = []
    for src in sources:
        base = src.get("input_cost_per_token")
        if isinstance(base, bool) or not isinstance(base, int | float) or base <= 0:
            continue
        for tier in ("flex", "priority"):
            value = src.get(f"input_cost_per_token_{tier}")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ImportRejected(f"{where}.input_cost_per_token_{tier} must be a number above 0 (USD per "
                                     f"token), got {value!r}")
            out.append((tier, round(value / base, 6)))
        break
    return tuple(sorted(out))


# Every field litellm_price reads (a config's litellm_params carrying them are imported, not noted)
PRICE_FIELDS = frozenset((*(f for f, _ in _FIELDS), "output_cost_per_reasoning_token", *_ABOVE_200K,
                          "input_cost_per_token_flex", "input_cost_per_token_priority",
                          "output_cost_per_token_flex", "output_cost_per_token_priority",
                          "cache_read_input_token_cost_flex", "cache_read_input_token_cost_priority",
                          "search_context_cost_per_query", "file_search_cost_per_1k_calls",
                          "code_interpreter_cost_per_session", *(f for f, _ in MODALITY_FIELDS)))


def litellm_price(model: str, sources: Sequence[Mapping[str, Any]], where: str,
                  notes: list[str] | None = None) -> PriceSpec | None:
    """The price LiteLLM's per-token fields give `model` (the first source holding a field wins);
    None when no source has an input or output price. Reasoning tokens are output tokens in
    shieldes: a different `output_cost_per_reasoning_token` is reported in `notes`, not kept."""
    found: dict[str, float] = {}
    for field, name in (*_FIELDS, ("output_cost_per_reasoning_token", "reasoning")):
        for src in sources:
            if src.get(field) is not None:
                found[name] = _per_1m(src[field], f"{where}.{field}")
                break
    if "input_per_1m" not in found and "output_per_1m" not in found:
        return None
    price = PriceSpec(model, found.get("input_per_1m", 0.0), found.get("output_per_1m", 0.0),
                      found.get("cache_read_per_1m"), found.get("cache_write_per_1m"),
                      long_context=_above_200k(sources, where), per_web_search=_per_search(sources, where),
                      multipliers=_tier_multipliers(sources, where), per_use=_per_use(sources, where),
                      modalities=_modalities(sources, where))
    reasoning = found.get("reasoning")
    if notes is not None and reasoning is not None and reasoning != price.output_per_1m:
        notes.append(f"{model}: reasoning tokens are billed at the output price (${price.output_per_1m:g}/1M), "
                     f"not the file's ${reasoning:g}/1M; set a model apart with `shieldes pricing set` if needed")
    return price


def parse_litellm_prices(doc: Any) -> tuple[list[PriceSpec], int, list[str]]:
    """(prices of chat/completion/embedding models, number of entries left out, notes)."""
    if not isinstance(doc, dict) or not any(isinstance(v, dict) and "input_cost_per_token" in v
                                            for v in doc.values()):
        raise ImportRejected("not a LiteLLM price file: expected model_prices_and_context_window.json, a map "
                             "of model names to {\"input_cost_per_token\", \"output_cost_per_token\", ...}")
    out: list[PriceSpec] = []
    notes: list[str] = []
    skipped = 0
    for model, entry in doc.items():
        if model == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") not in _PRICED_MODES \
                or "input_cost_per_token" not in entry:
            skipped += 1
            continue
        try:
            check_models((model,))
        except Exception:
            skipped += 1  # names shieldes cannot store (spaces etc.)
            continue
        price = litellm_price(model, [entry], repr(model), notes)
        if price is not None:
            out.append(price)
    return out, skipped, notes


def known_models(state: ConfigState) -> set[str]:
    served = {m for d in state.providers.values() for m in d.models}
    targets = {t.model for a in state.aliases.values() for t in a.targets}
    return set(shipped()) | set(state.pricing) | served | targets


def plan_prices(state: ConfigState, prices: list[PriceSpec], *, everything: bool = False,
                models: Collection[str] | None = None) -> Plan:
    wanted = set(models) if models else (None if everything else known_models(state))
    plan = Plan()
    for price in prices:
        if wanted is None or price.model in wanted:
            price_change(plan, state, price)
    return plan
