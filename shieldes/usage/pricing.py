"""Prices and cost in integer nano-USD.

A price is USD per 1M tokens; one token at $1/1M costs 1,000,000 pico-USD, so a price is turned
into an integer pUSD-per-token rate once (resolution: $0.000001 per 1M tokens, finer than any list
price: Claude 3 Haiku's cache writes cost $0.3125/1M, Nova Micro's cache reads $0.00875/1M), a
request's cost is an exact integer sum, rounded once to whole nUSD (half up): summing a million
requests is off by less than $0.001. `pricing.set` events override the shipped catalog
(shieldes/pricing/catalog.json).

A price set for a pattern (`claude-opus-*`, `*`) prices the names it matches that have no exact
price: an operator's exact price, then the shipped catalog's, then the operator's longest matching
pattern (the routing's pattern rule). The catalog's exact price wins over a pattern because it is
that model's known price, and a pattern is set to price the names nobody priced yet (a model
released after the config was written); a name whose price should differ gets an exact one.

Prompt caching: upstreams report cache reads (Anthropic `cache_read_input_tokens`, OpenAI
`prompt_tokens_details.cached_tokens`) and cache writes (Anthropic `cache_creation_input_tokens`)
as parts of the input. Those parts cost the model's cache-read / cache-write price; a model
without one bills them at its input price. Claude's cache writes kept for an hour (`ttl: 1h`,
reported apart by Anthropic and Bedrock) cost twice the input price, as those providers bill them.

Modalities: where an upstream reports how many of the tokens were audio or image (TokenUsage.modal)
and the model has a price for that kind (Price.modalities), those tokens cost it and the rest the
text price; a kind without a price costs the text price of the same place (input, cache read,
output). A budget holds a request at the dearest input and output price the model has, since the
answer may be any mix (held).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, NamedTuple

from shieldes.projections.state import Price, is_model_pattern, longest_pattern
from shieldes.usage.catalog import shipped
from shieldes.usage.units import NO_UNITS, Units

if TYPE_CHECKING:  # the provider boundary: not for the CLI's price checks
    from shieldes.providers.base import TokenUsage


def default_prices() -> Mapping[str, Price]:
    """Every model of the shipped catalog (usage/catalog.py), cache prices included."""
    return {m: e.price() for m, e in shipped().items()}


class Rate(NamedTuple):
    """pUSD per token (per image, per web search). `long`: the rates of every token of a request
    whose prompt has more than `long_above` tokens (see tier)."""

    input: int
    output: int
    cache_read: int
    cache_write: int
    image: int = 0  # per generated image (answers without token usage)
    long_above: int = 0
    long: Rate | None = None
    web_search: int = 0  # per server-side web search
    # multipliers in parts per million (0: none): the flex and priority service tiers, a regional
    # Vertex endpoint (see served_at)
    flex: int = 0
    priority: int = 0
    regional: int = 0
    file_search: int = 0  # per hosted file search (OpenAI's file_search_call)
    container: int = 0  # per code interpreter container
    modal: tuple[tuple[str, int], ...] = ()  # (kind, pUSD per token): audio and image tokens (MODALITIES)


NO_RATE = Rate(0, 0, 0, 0)


PUSD_PER_NUSD = 1000


def pusd_per_token(usd_per_1m: float) -> int:
    """USD per 1M tokens (or per 1M seconds, characters) as exact integer pUSD per one: through the
    float's shortest decimal text, so 0.00875 is 8750, not 8750.000000000002 rounded."""
    return int((Decimal(repr(usd_per_1m)) * 1_000_000).to_integral_value(ROUND_HALF_UP))


def pusd_each(usd: float) -> int:
    """USD per one (an image, a web search) as integer pUSD."""
    return int((Decimal(repr(usd)) * 1_000_000_000_000).to_integral_value(ROUND_HALF_UP))


def to_nusd(pusd: int) -> int:
    """A request's cost in whole nUSD, rounded half up (costs are never negative)."""
    return (pusd + PUSD_PER_NUSD // 2) // PUSD_PER_NUSD


def _token_rate(input_per_1m: float, output_per_1m: float, read: float | None, write: float | None) -> Rate:
    input_ = pusd_per_token(input_per_1m)
    return Rate(input_, pusd_per_token(output_per_1m), input_ if read is None else pusd_per_token(read),
                input_ if write is None else pusd_per_token(write))


PPM = 1_000_000


def ppm(factor: float | None) -> int:
    """A multiplier as exact integer parts per million (0 for none)."""
    return 0 if factor is None else int((Decimal(repr(factor)) * PPM).to_integral_value(ROUND_HALF_UP))


def _scaled(rate: Rate, factor_ppm: int) -> Rate:
    """Every token rate times the factor, rounded half up to whole pUSD per token (a list price has
    no finer digit: 5/3 x $0.15/1M is $0.25/1M exactly); per-image and per-search prices unchanged."""
    def times(v: int) -> int:
        return (v * factor_ppm + PPM // 2) // PPM
    long = None if rate.long is None else _scaled(rate.long, factor_ppm)
    return rate._replace(input=times(rate.input), output=times(rate.output), cache_read=times(rate.cache_read),
                         cache_write=times(rate.cache_write), long=long,
                         modal=tuple((k, times(v)) for k, v in rate.modal))


def served_at(rate: Rate, service_tier: str | None, regional: bool = False) -> Rate:
    """The rates of an answer served at `service_tier` (in OpenAI's words, as the answer reports
    it) by a regional endpoint or not: the model's multiplier for the tier (flex, priority) and for
    the region, each when the price has one; the list rates otherwise (the default tier, a tier
    the price names no multiplier for)."""
    factor = rate.flex if service_tier == "flex" else rate.priority if service_tier == "priority" else 0
    if factor:
        rate = _scaled(rate, factor)
    if regional and rate.regional:
        rate = _scaled(rate, rate.regional)
    return rate


def regional(kind: str, options: Mapping[str, str]) -> bool:
    """A deployment whose calls cost the model's `regional` multiplier: Vertex AI in a region (its
    location not `global`), where Claude 4.5 models cost 10% more than at the global endpoint."""
    return kind == "vertex" and options.get("location", "global") != "global"


def rate_of(price: Price) -> Rate:
    base = _token_rate(price.input_per_1m, price.output_per_1m, price.cache_read_per_1m, price.cache_write_per_1m)
    long = price.long_context
    return base._replace(
        flex=ppm(price.multiplier("flex")), priority=ppm(price.multiplier("priority")),
        regional=ppm(price.multiplier("regional")),
        image=0 if price.per_image is None else pusd_each(price.per_image),
        web_search=0 if price.per_web_search is None else pusd_each(price.per_web_search),
        file_search=pusd_each(price.per("file_search") or 0.0), container=pusd_each(price.per("container") or 0.0),
        modal=tuple((kind, pusd_per_token(usd)) for kind, usd in price.modalities),
        long_above=0 if long is None else long.above_tokens,
        long=None if long is None else _token_rate(long.input_per_1m, long.output_per_1m, long.cache_read_per_1m,
                                                   long.cache_write_per_1m),
    )


def tier(rate: Rate, prompt_tokens: int) -> Rate:
    """The rates a request with `prompt_tokens` input tokens (cache reads and writes included) is
    billed at: the long-context tier for every token of it once the prompt is above the tier's
    threshold (Gemini 2.5/3 Pro above 200k; Claude Sonnet 4/4.5 above 200k, which only the 1M
    window admits), else the base rates. The threshold is the prompt's, never the output's. Prices
    by modality are the same at every prompt size (no provider lists a long-context one)."""
    if rate.long is not None and prompt_tokens > rate.long_above:
        return rate.long._replace(image=rate.image, web_search=rate.web_search, file_search=rate.file_search,
                                  container=rate.container, modal=rate.modal)
    return rate


def price_for(pricing: Mapping[str, Price], model: str) -> tuple[str, Price] | None:
    """The price that costs `model` and the name it was set under (the model itself, or the
    operator's pattern that matched): an operator's exact price, else the shipped catalog's, else
    the operator's longest matching pattern; None when nothing prices it."""
    if model in pricing and not is_model_pattern(model):
        return model, pricing[model]
    entry = shipped().get(model)
    if entry is not None:
        return model, entry.price()
    pattern = longest_pattern(pricing, model)
    return None if pattern is None else (pattern, pricing[pattern])


# Names resolved through price patterns, kept per config: client-chosen names cannot grow it past this.
PATTERN_NAMES_KEPT = 10_000


class PriceTable:
    """Integer per-token rates for each model: shipped defaults overlaid with `pricing.set` events,
    then patterns (see price_for), resolved once per name so the hot path does a dict lookup.

    Rebuilt only when the config's pricing mapping changes (it is copy-on-write, so identity tells)."""

    def __init__(self) -> None:
        self._source: Mapping[str, Price] | None = None
        self._rates: dict[str, Rate] = {}  # exact names
        self._patterns = False
        self._by_pattern: dict[str, Rate | None] = {}  # names no exact price covers: their pattern's rate

    def _load(self, pricing: Mapping[str, Price]) -> None:
        if pricing is not self._source:
            rates = {m: rate_of(p) for m, p in default_prices().items()}
            for model, price in pricing.items():
                if not is_model_pattern(model):
                    rates[model] = rate_of(price)
            self._rates, self._source = rates, pricing
            self._patterns = any(is_model_pattern(m) for m in pricing)
            self._by_pattern = {}

    def lookup(self, pricing: Mapping[str, Price], model: str) -> Rate | None:
        """The model's rates, or None for a model nothing prices."""
        self._load(pricing)
        rate = self._rates.get(model)
        if rate is not None or not self._patterns:
            return rate
        if model in self._by_pattern:
            return self._by_pattern[model]
        found = price_for(pricing, model)
        rate = None if found is None else rate_of(found[1])
        if len(self._by_pattern) < PATTERN_NAMES_KEPT:
            self._by_pattern[model] = rate
        return rate

    def rate(self, pricing: Mapping[str, Price], model: str) -> Rate:
        """The model's rates; all zero for a model without a price."""
        return self.lookup(pricing, model) or NO_RATE

    def priced(self, pricing: Mapping[str, Price], model: str) -> bool:
        """A price is known (a shipped default, `pricing set` for the name or a pattern matching it;
        an explicit $0 counts as priced)."""
        return self.lookup(pricing, model) is not None


def unpriced(pricing: Mapping[str, Price], models: Iterable[str]) -> list[str]:
    """The models among `models` that have no price: under a budget they cost $0, so they are refused
    unless SHIELDES_ALLOW_UNPRICED=true. A provider's patterns (`claude-*`) are left out: the names
    they serve are not known in advance (a price pattern prices them as they come)."""
    return sorted({m for m in models if not is_model_pattern(m) and price_for(pricing, m) is None})


def family_pattern(model: str, served_by: str | None = None) -> str:
    """A price pattern to suggest for `model`: the provider pattern that serves it (but `*`, which
    would give every name one price), else the name without its last `-` part (claude-opus-5-5 ->
    claude-opus-5-*)."""
    if served_by is not None and served_by != "*":
        return served_by
    head, dash, _ = model.rpartition("-")
    return f"{head}{dash}*" if head else f"{model}*"


def price_hint(model: str, served_by: str | None = None) -> str:
    """How to price `model`: by name, or its family by pattern."""
    return (f"`shieldes pricing set {model} --input USD_PER_1M --output USD_PER_1M` (or price every name of its "
            f"family with a pattern: `shieldes pricing set '{family_pattern(model, served_by)}' ...`)")


def unpriced_warning(models: Sequence[str]) -> str:
    listed = ", ".join(models)
    them = "it" if len(models) == 1 else "them"
    return (f"no price for {listed}: requests for {them} from keys or teams with a budget are refused "
            f"(403 model_not_priced); set one with {price_hint(models[0])}")


def cost_nusd(rate: Rate, usage: TokenUsage) -> int:
    """Exact cost of `usage`: cache reads and writes (parts of prompt_tokens) at their own rates;
    writes kept for an hour (Claude's `ttl: 1h`) at twice the input rate, as Anthropic, Bedrock and
    Vertex bill them (the cache-write price is the 5-minute one). A long prompt bills every token
    at the long-context tier (see tier). An answer served at the flex or priority service tier bills
    at the model's multiplier for it (see served_at). Server-side web searches the upstream reports
    cost the per-search price each, hosted file searches and code interpreter containers their
    per-use prices. Summed in pUSD, rounded once to nUSD."""
    return to_nusd(_cost_pusd(rate, usage))


def tokens_nusd(rate: Rate, prompt_tokens: int, completion_tokens: int) -> int:
    """cost_nusd of text tokens alone at the list tier (an admission's estimate), without a
    TokenUsage built for it."""
    if rate.long is not None:
        rate = tier(rate, prompt_tokens)
    return to_nusd((prompt_tokens if prompt_tokens > 0 else 0) * rate.input + completion_tokens * rate.output)


# a TokenUsage's counts from cache_read_tokens to containers (its fields 2-7) when it has none
_TEXT_ONLY = (0, 0, 0, 0, 0, 0)


def _cost_pusd(rate: Rate, usage: TokenUsage) -> int:
    # served_at and tier change nothing for an answer of the default tier and a rate of one tier
    if usage.service_tier is not None:
        rate = served_at(rate, usage.service_tier)
    if rate.long is not None:
        rate = tier(rate, usage.prompt_tokens)
    if usage[2:8] == _TEXT_ONLY and not usage.modal:  # no cache, no hosted tool: the common answer
        prompt = usage.prompt_tokens
        return (prompt if prompt > 0 else 0) * rate.input + usage.completion_tokens * rate.output
    read, write = usage.cache_read_tokens, usage.cache_write_tokens
    cached = read + write
    plain = max(0, usage.prompt_tokens - cached)
    hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    return (plain * rate.input + usage.cache_read_tokens * rate.cache_read
            + (usage.cache_write_tokens - hour) * rate.cache_write + hour * 2 * rate.input
            + usage.completion_tokens * rate.output + usage.web_search_requests * rate.web_search
            + usage.file_search_calls * rate.file_search + usage.containers * rate.container
            + (_modal_pusd(rate, usage, plain) if usage.modal and rate.modal else 0))


_INPUT = ("audio_input", "image_input")
_OUTPUT = ("audio_output", "image_output")


def _modal_pusd(rate: Rate, usage: TokenUsage, plain: int) -> int:
    """What the audio and image tokens cost beyond the text price _cost_pusd billed them at: each
    kind's tokens (no more than the place holds: a count above what the upstream billed is not
    believed) times its price less the text price of the same place. Input kinds count their cache
    reads too, which cost the `*_cache_read` price."""
    prices, counts = dict(rate.modal), dict(usage.modal)
    extra = 0
    room_plain, room_read, room_out = plain, usage.cache_read_tokens, usage.completion_tokens
    for kind in _INPUT:
        cached, total = kind.replace("input", "cache_read"), counts.get(kind, 0)
        read = min(counts.get(cached, 0), room_read, total)
        fresh = min(total - read, room_plain)
        # more of the kind than the uncached tokens hold, not said to be cached (OpenAI's chat usage
        # does not say which cache reads were audio): the rest can only be among the cache reads
        read += min(total - read - fresh, room_read - read)
        room_read, room_plain = room_read - read, room_plain - fresh
        extra += fresh * (prices.get(kind, rate.input) - rate.input)
        extra += read * (_cached_price(rate, prices, kind) - rate.cache_read)
    for kind in _OUTPUT:
        made = min(counts.get(kind, 0), room_out)
        room_out -= made
        extra += made * (prices.get(kind, rate.output) - rate.output)
    return extra


def _cached_price(rate: Rate, prices: dict[str, int], kind: str) -> int:
    """A cache read of an audio or image input token: the model's `*_cache_read` price, else the
    kind's input price at the discount the model gives text cache reads (none without a cache-read
    price: OpenAI's audio models; a tenth: Gemini, whose cached audio is a tenth of its audio), else
    the text cache-read price."""
    cached = prices.get(kind.replace("input", "cache_read"))
    if cached is not None:
        return cached
    if kind in prices and rate.input:
        return prices[kind] * rate.cache_read // rate.input
    return rate.cache_read


def held(rate: Rate) -> Rate:
    """The rates a budget holds a request at before its answer says what its tokens carry: input
    and output at the dearest price the model has for them (an audio model's audio prices), so the
    hold bounds the answer's cost whatever the mix."""
    if not rate.modal:
        return rate
    prices = dict(rate.modal)

    def dearest(r: Rate) -> Rate:
        return r._replace(input=max(r.input, *(prices.get(k, 0) for k in _INPUT)),
                          output=max(r.output, *(prices.get(k, 0) for k in _OUTPUT)))
    return dearest(rate)._replace(long=None if rate.long is None else dearest(rate.long))


def dearest(rates: Sequence[Rate], prompt_tokens: int) -> Rate:
    """A rate no cheaper than any of `rates` (each as held: held(), a tier's multiplier applied) for
    a prompt of `prompt_tokens` and any completion: each price the highest any of them has, at the
    long-context tier where the prompt reaches it. Models that may answer one request (its
    fallbacks) differ in shape: the dearest at a guessed completion (a dear prompt, a cheap answer)
    is not the dearest at the completion cap the budget then allows."""
    tiered = [tier(r, prompt_tokens) if r.long is not None else r for r in rates]
    return Rate(input=max(r.input for r in tiered), output=max(r.output for r in tiered),
                cache_read=max(r.cache_read for r in tiered), cache_write=max(r.cache_write for r in tiered),
                image=max(r.image for r in tiered), web_search=max(r.web_search for r in tiered),
                file_search=max(r.file_search for r in tiered), container=max(r.container for r in tiered))


def tool_uses(rate: Rate, usage: TokenUsage) -> Units:
    """The hosted tool uses of `usage` and the part of its cost they make (per-use prices are
    whole nUSD, so the part is exact): recorded beside the tokens so reports can split them out."""
    if not (usage.web_search_requests or usage.file_search_calls or usage.containers):
        return NO_UNITS
    pusd = (usage.web_search_requests * rate.web_search + usage.file_search_calls * rate.file_search
            + usage.containers * rate.container)
    return Units(web_searches=usage.web_search_requests, file_searches=usage.file_search_calls,
                 containers=usage.containers, tools_nusd=to_nusd(pusd))


def media_cost_nusd(rate: Rate, usage: TokenUsage, units: Units = NO_UNITS) -> int:
    """Cost of a media answer: its tokens as cost_nusd, its seconds of audio (whisper-1) and
    characters (tts-1) at the input price (USD per 1M of them), plus its images at the per-image
    price (answers without token usage; a model without a per-image price bills them at $0, see
    docs/media.md)."""
    return to_nusd(_cost_pusd(rate, usage) + (units.audio_seconds + units.characters) * rate.input
                   + units.images * rate.image)


def completion_cap(most: int, prompt_tokens: int, rate: Rate, budget_left: int | None,
                   tokens_left: int | None) -> int:
    """max_tokens for a budgeted request naming none: at most `most` (SHIELDES_BUDGET_MAX_TOKENS),
    and no more than what the budget (nUSD) and the tpm limit have left after the prompt, so a
    request that fits is not refused for an estimate it would not reach. At least 1: with nothing
    left, admission refuses it with the reason."""
    cap = most
    rate = tier(rate, prompt_tokens)
    # (comparisons, not min() and max(): builtins that parse their keywords, some 700 instructions each)
    if budget_left is not None and rate.output > 0:
        room = (budget_left * PUSD_PER_NUSD - prompt_tokens * rate.input) // rate.output
        if room < cap:
            cap = room
    if tokens_left is not None and tokens_left - prompt_tokens < cap:
        cap = tokens_left - prompt_tokens
    return cap if cap > 1 else 1
