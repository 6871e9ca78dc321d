"""The shipped price catalog (shieldes/pricing/catalog.json) and the price list shown to people:
every shipped default and every `pricing.set` override, each with its source."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

from shieldes.errors import CommandRejected
from shieldes.projections.state import LongContext, Price


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """USD per 1M tokens. Cache prices None: cache tokens cost the input price."""

    provider: str
    input_per_1m: float
    output_per_1m: float
    cache_read_per_1m: float | None = None
    cache_write_per_1m: float | None = None
    per_image: float | None = None  # USD per generated image (answers without token usage)
    long_context: LongContext | None = None  # the prices above a prompt size (Gemini Pro, Claude 1M)
    per_web_search: float | None = None  # USD per server-side web search (Claude's web search tool)
    multipliers: tuple[tuple[str, float], ...] = ()  # (where, factor): OpenAI's flex and priority tiers
    per_use: tuple[tuple[str, float], ...] = ()  # (tool, USD per use): OpenAI's hosted tools
    modalities: tuple[tuple[str, float], ...] = ()  # (kind, USD per 1M): audio and image tokens

    def price(self) -> Price:
        return Price(self.input_per_1m, self.output_per_1m, self.cache_read_per_1m, self.cache_write_per_1m,
                     self.per_image, self.long_context, self.per_web_search, self.multipliers, self.per_use,
                     self.modalities)


_LONG_KEYS = ("above_tokens", "input_per_1m", "output_per_1m", "cache_read_per_1m", "cache_write_per_1m")


def long_context_from(found: Any, where: str = "long_context") -> LongContext | None:
    """A long-context tier from its JSON object (the catalog, the admin API, a config export):
    `above_tokens`, `input_per_1m` and `output_per_1m` required, cache prices optional. The numbers
    are checked where the price is set (decide_shared)."""
    if found is None:
        return None
    if not isinstance(found, Mapping) or any(k not in found for k in _LONG_KEYS[:3]) \
            or any(k not in _LONG_KEYS for k in found) \
            or any(v is not None and (isinstance(v, bool) or not isinstance(v, int | float)) for v in found.values()):
        raise CommandRejected(f"{where} must be an object with above_tokens (prompt tokens, e.g. 200000), "
                              "input_per_1m and output_per_1m, and optionally cache_read_per_1m and "
                              f"cache_write_per_1m (USD per 1M tokens); got {found!r}")
    return LongContext(found["above_tokens"], found["input_per_1m"], found["output_per_1m"],
                       found.get("cache_read_per_1m"), found.get("cache_write_per_1m"))


def _long_context(entry: Mapping[str, Any]) -> LongContext | None:
    return long_context_from(entry.get("long_context"))


@functools.cache
def shipped() -> Mapping[str, CatalogEntry]:
    """The catalog, read from the package once (on first use, not at import)."""
    text = resources.files("shieldes").joinpath("pricing/catalog.json").read_text(encoding="utf-8")
    models: dict[str, Any] = json.loads(text)["models"]
    return MappingProxyType({
        m: CatalogEntry(e["provider"], float(e["input_per_1m"]), float(e["output_per_1m"]),
                        e.get("cache_read_per_1m"), e.get("cache_write_per_1m"), e.get("per_image"),
                        _long_context(e), e.get("per_web_search"), tuple(sorted(e.get("multipliers", {}).items())),
                        tuple(sorted(e.get("per_use", {}).items())),
                        tuple(sorted(e.get("modalities", {}).items())))
        for m, e in models.items()
    })


def price_rows(pricing: Mapping[str, Price]) -> list[dict[str, Any]]:
    """Every known price, sorted by model: overrides (`source: override`) replace shipped defaults
    (`source: default`). Reasoning (thinking) tokens are output tokens: their price is the output price."""
    rows: dict[str, dict[str, Any]] = {}
    for model, e in shipped().items():
        rows[model] = {"model": model, "provider": e.provider, "input_per_1m": e.input_per_1m,
                       "output_per_1m": e.output_per_1m, "cache_read_per_1m": e.cache_read_per_1m,
                       "cache_write_per_1m": e.cache_write_per_1m, "reasoning_per_1m": e.output_per_1m,
                       "per_image": e.per_image, "long_context": _long_fields(e.long_context),
                       "per_web_search": e.per_web_search, "multipliers": dict(e.multipliers) or None,
                       "per_use": dict(e.per_use) or None, "modalities": dict(e.modalities) or None,
                       "source": "default"}
    for model, p in pricing.items():
        default = shipped().get(model)
        rows[model] = {"model": model, "provider": default.provider if default else None,
                       "input_per_1m": p.input_per_1m, "output_per_1m": p.output_per_1m,
                       "cache_read_per_1m": getattr(p, "cache_read_per_1m", None),
                       "cache_write_per_1m": getattr(p, "cache_write_per_1m", None),
                       "reasoning_per_1m": p.output_per_1m, "per_image": getattr(p, "per_image", None),
                       "long_context": _long_fields(getattr(p, "long_context", None)),
                       "per_web_search": getattr(p, "per_web_search", None),
                       "multipliers": dict(getattr(p, "multipliers", ())) or None,
                       "per_use": dict(getattr(p, "per_use", ())) or None,
                       "modalities": dict(getattr(p, "modalities", ())) or None, "source": "override"}
    return [rows[m] for m in sorted(rows)]


def _long_fields(long: LongContext | None) -> dict[str, float] | None:
    return None if long is None else long.fields()
