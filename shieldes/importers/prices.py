"""LiteLLM's public price list (model_prices_and_context_window.json) -> `pricing.set` commands.

Entries give USD per token (`input_cost_per_token`, `output_cost_per_token`); shieldes keeps USD
per 1M tokens. Which entries are taken: by default the models this gateway knows (the shipped
catalog, prices already set, models providers and aliases serve), all of them with `everything`,
or the listed `models`. A price equal to the one in force is left alone, so a re-import writes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from shieldes.importers.plan import Change, Plan
from shieldes.importers.spec import ImportRejected, PriceSpec
from shieldes.projections.commands import SetPricing, check_models
from shieldes.projections.state import ConfigState
from shieldes.usage.catalog import shipped

_PRICED_MODES = (None, "chat", "completion", "embedding", "responses")


def _per_1m(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImportRejected(f"{where} must be a number >= 0 (USD per token), got {value!r}")
    return round(float(value) * 1_000_000, 9)  # strips float noise: 3e-06 * 1e6 = 2.9999...


def parse_litellm_prices(doc: Any) -> tuple[list[PriceSpec], int]:
    """(prices of chat/completion/embedding models, number of entries left out)."""
    if not isinstance(doc, dict) or not any(isinstance(v, dict) and "input_cost_per_token" in v
                                            for v in doc.values()):
        raise ImportRejected("not a LiteLLM price file: expected model_prices_and_context_window.json, a map "
                             "of model names to {\"input_cost_per_token\", \"output_cost_per_token\", ...}")
    out: list[PriceSpec] = []
    skipped = 0
    for model, entry in doc.items():
        if model == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") not in _PRICED_MODES \
                or "input_cost_per_token" not in entry:
            skipped += 1
            continue
        where = f"{model!r}"
        try:
            check_models((model,))
        except Exception:
            skipped += 1  # names shieldes cannot store (spaces etc.)
            continue
        out.append(PriceSpec(model, _per_1m(entry["input_cost_per_token"], f"{where}.input_cost_per_token"),
                             _per_1m(entry.get("output_cost_per_token", 0), f"{where}.output_cost_per_token")))
    return out, skipped


def known_models(state: ConfigState) -> set[str]:
    served = {m for d in state.providers.values() for m in d.models}
    targets = {t.model for a in state.aliases.values() for t in a.targets}
    return set(shipped()) | set(state.pricing) | served | targets


def _in_force(state: ConfigState, model: str) -> tuple[float, float] | None:
    """(input, output) of the price in force: an override, else the shipped default."""
    current = state.pricing.get(model)
    if current is not None:
        return current.input_per_1m, current.output_per_1m
    default = shipped().get(model)
    return (default.input_per_1m, default.output_per_1m) if default is not None else None


def plan_prices(state: ConfigState, prices: list[PriceSpec], *, everything: bool = False,
                models: Collection[str] | None = None) -> Plan:
    wanted = set(models) if models else (None if everything else known_models(state))
    plan = Plan()
    for price in prices:
        if wanted is not None and price.model not in wanted:
            continue
        in_force = _in_force(state, price.model)
        detail = f"input ${price.input_per_1m:g}/1M, output ${price.output_per_1m:g}/1M"
        if in_force == (price.input_per_1m, price.output_per_1m):
            plan.changes.append(Change("pricing", price.model, "unchanged", detail))
            continue
        if in_force is not None:
            detail += f" (was ${in_force[0]:g}/${in_force[1]:g})"
        plan.commands.append(SetPricing(price.model, price.input_per_1m, price.output_per_1m))
        plan.changes.append(Change("pricing", price.model, "add" if in_force is None else "update", detail))
    return plan
