"""Money on the request path of one node: admit a request against limits and budgets with a hold
on its estimate at the dearest rates it may be served at, and settle the usage of a finished call."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from shieldes.errors import ModelNotPriced
from shieldes.gateway.upstream_calls import UpstreamCalls
from shieldes.projections.state import ConfigState, Deployment, VirtualKey, longest_pattern
from shieldes.providers.base import Operation, TokenUsage
from shieldes.providers.hosted_tools import USES_HELD, bounded_searches, held_uses, may_offer
from shieldes.routing.router import Route
from shieldes.usage.meter import Meter, Reservation
from shieldes.usage.pricing import (
    NO_RATE,
    Rate,
    completion_cap,
    cost_nusd,
    dearest,
    held,
    media_cost_nusd,
    price_hint,
    regional,
    served_at,
    tokens_nusd,
    tool_uses,
)
from shieldes.usage.units import NO_UNITS, Units

DEFAULT_COMPLETION_ESTIMATE = 256  # tokens estimated for an unbudgeted request naming no max_tokens


def _held_uses(tools: object, model: str, max_tool_calls: object) -> tuple[int, int, int]:
    """held_uses of a body's `tools`, decoded or as its JSON bytes (decoded only when they may name
    a hosted tool)."""
    if tools is None:
        return 0, 0, 0
    if not isinstance(tools, list):
        raw = bytes(memoryview(tools))  # type: ignore[arg-type]  # msgspec.Raw, bytes
        if not may_offer(raw):
            return 0, 0, 0
        try:
            tools = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 0, 0, 0  # the body's own checks refuse it
    return held_uses(tools, model, max_tool_calls)


class Charging(UpstreamCalls):
    """The Gateway's money half, on the Gateway's own state (set in Gateway.__init__)."""

    meter: Meter
    _held: dict[tuple[str, str, tuple[str, ...], bool, str | None, bool], tuple[tuple[Rate, ...], Rate | None]]
    _held_of: ConfigState | None

    # --- admission -----------------------------------------------------------------------------

    def budgeted(self, key: VirtualKey) -> bool:
        """The key or its team has a budget."""
        if key.budget is not None:
            return True
        team = self.state.config.teams.get(key.team_id) if key.team_id else None
        return team is not None and team.budget is not None

    def admit(self, key: VirtualKey, route: Route, prompt_bytes: int, max_tokens: int | None,
              op: Operation, *, choices: int = 1, service_tier: object = None,
              tools: object = None, max_tool_calls: object = None) -> tuple[Reservation, int | None]:
        """Admit one request: limits, budgets, and a hold on its estimate. Estimate: prompt bytes / 4
        tokens at the input price, plus max_tokens for each of the `choices` completions asked for
        (`n`) at the output price. Fails closed on money: a model without a price cannot be held to
        a budget, so it is refused under one.

        A budgeted request naming no max_tokens gets one (returned with the reservation; the caller
        must send it upstream), so its estimate bounds its completion cost instead of guessing it:
        decided here, for every route that admits a completion, so that none can spend past the
        budget by leaving it out. The cap is decided on the same counters admission reads (see
        completion_cap), and shared by the choices, each of which may run to it.

        `service_tier`: the body's; `priority` is held at the model's priority multiplier (flex at
        the list price: a flex request refused for capacity and sent on to another deployment is
        served at its default tier). `tools`: the body's (decoded, or its JSON bytes): a budget also
        holds the hosted tools it offers (held_uses, bounded by a Responses request's
        `max_tool_calls`), and the completion cap leaves room for them."""
        config = self.state.config
        budgeted = self.budgeted(key)
        prompt = prompt_bytes // 4
        rate = self._held_rate(key, route, budgeted, "priority" if service_tier == "priority" else None, prompt)
        usage = self.state.usage
        position = self.state.position
        seen = self.meter.look(config, usage, key, position)
        capped = None
        web, files, containers = _held_uses(tools, route.model, max_tool_calls) if budgeted else (0, 0, 0)
        if budgeted and max_tokens is None and op != "embeddings":
            left = seen.budget_left(key)
            if left is not None and (web or files or containers):
                left -= cost_nusd(rate, TokenUsage(0, 0, web_search_requests=web, file_search_calls=files,
                                                   containers=containers))
            capped = completion_cap(self.settings.budget_max_tokens * choices, prompt, rate, left,
                                    seen.tokens_left(key)) // choices
            if capped < 1:  # (not max(): a builtin that parses its keywords, some 700 instructions)
                capped = 1
            max_tokens = capped
        completion = 0 if op == "embeddings" else (max_tokens or DEFAULT_COMPLETION_ESTIMATE) * choices
        estimate = cost_nusd(rate, TokenUsage(prompt, completion, web_search_requests=web, file_search_calls=files,
                                              containers=containers)) if web or files or containers else \
            tokens_nusd(rate, prompt, completion)
        res = self.meter.admit(config, usage, key, estimate, position,
                               estimate_tokens=prompt + completion, seen=seen)
        return res, capped

    def tool_calls_bound(self, key: VirtualKey, route: Route, tools: object, max_tool_calls: object) -> int | None:
        """The `max_tool_calls` a budgeted Responses request that offers searches billed per use
        (web_search, file_search) and names none is sent with: the uses admission held for each
        (USES_HELD), as a request naming no max_tokens gets the tokens held, so that no answer
        searches past its hold. None otherwise (a code interpreter's container is held whole)."""
        if tools is None or max_tool_calls is not None or not self.budgeted(key):
            return None
        web, files, _ = _held_uses(tools, route.model, None)
        return USES_HELD if web or files else None

    def searches_bound(self, key: VirtualKey, tools: object) -> list[Any] | None:
        """A budgeted Messages request's `tools` (its JSON bytes) with each web search naming no
        `max_uses` given the uses admission holds for it (bounded_searches); None: nothing to bound."""
        if tools is None or not self.budgeted(key):
            return None
        raw = bytes(memoryview(tools))  # type: ignore[arg-type]  # msgspec.Raw
        if b"web_search" not in raw:
            return None
        try:
            return bounded_searches(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return None  # the body's own checks refuse it

    def _held_rate(self, key: VirtualKey, route: Route, budgeted: bool, tier: str | None, prompt: int) -> Rate:
        """The rates a request is held at: the dearest place it may be served (a priority tier asked
        for, a regional endpoint, the dearest modality price: an audio answer's audio output), and,
        when it may fall back, each price the dearest of every model a fallback may send it to has
        (at the long-context tier its `prompt` tokens reach: pricing.dearest), since the bill is the
        model that answers, whatever its completion. Under a budget a model without a price is
        refused, a fallback's too (fail closed)."""
        config = self.state.config
        if not route.fallbacks:  # (nearly every request)
            found = self.prices.lookup(config.pricing, route.model)
            if found is None and budgeted and not self.settings.allow_unpriced:
                raise self._not_priced(key, route)
            rate = found or NO_RATE
            # (served_at and held change nothing for a rate without the multiplier or prices asked for)
            if (tier is not None and (rate.flex or rate.priority)) or rate.regional:
                rate = served_at(rate, tier,
                                 any(regional(t.deployment.kind, t.deployment.options) for t in route.targets))
            return held(rate) if rate.modal else rate
        strict = budgeted and not self.settings.allow_unpriced
        if config is not self._held_of:  # copy-on-write config: identity tells a change
            self._held, self._held_of = {}, config
        memo = (route.requested, route.model, route.fallbacks, route.chained, tier, strict)
        known = self._held.get(memo)
        if known is None:
            rates = []
            for group in (route, *self.fallback_groups(route)):
                models = (route.model,) if group is route else tuple(dict.fromkeys(t.model for t in group.targets))
                for model in models:
                    found = self.prices.lookup(config.pricing, model)
                    if found is None and strict:
                        raise self._not_priced(key, group if group is route else replace(group, model=model),
                                               None if group is route else group.requested)
                    in_region = any(regional(t.deployment.kind, t.deployment.options) for t in group.targets)
                    rates.append(held(served_at(found or NO_RATE, tier, in_region)))
            # (without a long-context tier the prompt changes nothing: decided once)
            known = (tuple(rates), dearest(rates, 0) if all(r.long is None for r in rates) else None)
            if len(self._held) < 10_000:
                self._held[memo] = known
        rates_of, fixed = known
        return fixed if fixed is not None else dearest(rates_of, prompt)

    def _not_priced(self, key: VirtualKey, route: Route, fallback: str | None = None) -> ModelNotPriced:
        served_by = longest_pattern(route.targets[0].deployment.models, route.model) if route.targets else None
        via = f" (a fallback, via {fallback!r})" if fallback is not None else ""
        return ModelNotPriced(
            f"model {route.model!r}{via} has no price, so the budget of key {key.name!r} (or its team) cannot "
            f"be enforced on it; set one with {price_hint(route.model, served_by)} (an operator may allow "
            "unpriced models with SHIELDES_ALLOW_UNPRICED=true)"
        )

    def _priced(self, key: VirtualKey, route: Route) -> Rate:
        """The route's model's rates; a model without a price is refused under a budget (fail closed)."""
        found = self.prices.lookup(self.state.config.pricing, route.model)
        if found is None and self.budgeted(key) and not self.settings.allow_unpriced:
            raise self._not_priced(key, route)
        return found or NO_RATE

    def admit_estimate(self, key: VirtualKey, route: Route, usage: TokenUsage, units: Units = NO_UNITS, *,
                       billed: bool = True) -> Reservation:
        """Admit a request whose estimate is known from what it asks for (the media routes: the
        images asked for, the characters to speak, the audio's length): limits, budgets, and a hold
        on that estimate at the model's rates. `billed` False: the call costs nothing (moderations),
        so it needs no price, and only its tokens count against limits."""
        config = self.state.config
        rate = self._priced(key, route) if billed else NO_RATE
        return self.meter.admit(config, self.state.usage, key, media_cost_nusd(held(rate), usage, units),
                                self.state.position,
                                estimate_tokens=usage.prompt_tokens + usage.completion_tokens + units.counted())

    # --- settlement --------------------------------------------------------------------------------

    def settle(self, res: Reservation, dep: Deployment, model: str, usage: TokenUsage) -> int:
        """Account real usage of a finished call at the rates of the deployment that served it (a
        regional endpoint's multiplier); returns its cost in nUSD."""
        rate = self.prices.rate(self.state.config.pricing, model)
        if rate.regional and regional(dep.kind, dep.options):
            rate = served_at(rate, None, True)
        nusd = cost_nusd(rate, usage)
        self.quotas.answered(dep.name, usage.prompt_tokens + usage.completion_tokens)
        self.meter.settle(res, dep.name, model, usage.prompt_tokens, usage.completion_tokens, nusd,
                          tool_uses(rate, usage))
        self.metrics.usage(dep.name, model, usage, nusd)
        return nusd

    def settle_media(self, res: Reservation, dep: Deployment, model: str, usage: TokenUsage,
                     units: Units = NO_UNITS, *, billed: bool = True) -> int:
        """settle() for the media routes: `units` (images, seconds, characters) recorded in their own
        unit and priced as such, or nothing billed at all."""
        rate = self.prices.rate(self.state.config.pricing, model) if billed else NO_RATE
        nusd = media_cost_nusd(rate, usage, units)
        self.quotas.answered(dep.name, usage.prompt_tokens + usage.completion_tokens + units.counted())
        self.meter.settle(res, dep.name, model, usage.prompt_tokens, usage.completion_tokens, nusd, units)
        self.metrics.usage(dep.name, model, usage, nusd)
        if units != NO_UNITS:
            self.metrics.media_units(dep.name, model, units)
        return nusd
