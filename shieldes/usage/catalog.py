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

from shieldes.projections.state import Price


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """USD per 1M tokens. Cache prices None: cache tokens cost the input price."""

    provider: str
    input_per_1m: float
    output_per_1m: float
    cache_read_per_1m: float | None = None
    cache_write_per_1m: float | None = None
    per_image: float | None = None  # USD per generated image (answers without token usage)


@functools.cache
def shipped() -> Mapping[str, CatalogEntry]:
    """The catalog, read from the package once (on first use, not at import)."""
    text = resources.files("shieldes").joinpath("pricing/catalog.json").read_text(encoding="utf-8")
    models: dict[str, Any] = json.loads(text)["models"]
    return MappingProxyType({
        m: CatalogEntry(e["provider"], float(e["input_per_1m"]), float(e["output_per_1m"]),
                        e.get("cache_read_per_1m"), e.get("cache_write_per_1m"), e.get("per_image"))
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
                       "per_image": e.per_image, "source": "default"}
    for model, p in pricing.items():
        default = shipped().get(model)
        rows[model] = {"model": model, "provider": default.provider if default else None,
                       "input_per_1m": p.input_per_1m, "output_per_1m": p.output_per_1m,
                       "cache_read_per_1m": getattr(p, "cache_read_per_1m", None),
                       "cache_write_per_1m": getattr(p, "cache_write_per_1m", None),
                       "reasoning_per_1m": p.output_per_1m, "per_image": getattr(p, "per_image", None),
                       "source": "override"}
    return [rows[m] for m in sorted(rows)]
