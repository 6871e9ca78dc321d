"""The in-memory config state. Frozen values; folds return a new ConfigState (copy-on-write), so a
request that grabbed `state` keeps a consistent view while a change is applied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")


def is_model_pattern(name: str) -> bool:
    """A model entry ending in `*` (`claude-*`, or `*` alone) stands for every name it prefixes."""
    return name.endswith("*")


def pattern_matches(pattern: str, model: str) -> bool:
    """`model` is one of the names `pattern` (a model pattern) stands for."""
    return model.startswith(pattern[:-1])


def longest_pattern(names: Iterable[str], model: str) -> str | None:
    """The longest pattern among `names` that matches `model` (`*` alone is the shortest), or None:
    a more specific pattern is the operator's more specific intent, for routing as for prices."""
    best: str | None = None
    for m in names:
        if is_model_pattern(m) and (best is None or len(m) > len(best)) and pattern_matches(m, model):
            best = m
    return best


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit per period, in USD."""

    amount_usd: float
    period: str  # "1d", "30d", "1mo", ... (see periods.py)
    # the amount in nUSD, as admission compares spend to it: worked out once (a round() of a float
    # costs every budgeted request some 1,300 instructions a check)
    limit_nusd: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit_nusd", round(self.amount_usd * 1_000_000_000))  # (usage.admission.NUSD)


@dataclass(frozen=True, slots=True)
class Deployment:
    """A provider entry: one upstream endpoint serving some models."""

    name: str
    kind: str  # a key of providers.kinds.KINDS
    base_url: str
    secret_ref: str | None
    models: tuple[str, ...]
    weight: float
    responses: str = "translate"  # how /v1/responses reaches it: "translate" (chat) or "native"
    options: Mapping[str, str] = field(default_factory=dict)  # the kind's own settings

    def serves(self, model: str) -> bool:
        """`model` is listed, or matched by one of the patterns listed."""
        return model in self.models or any(is_model_pattern(m) and pattern_matches(m, model) for m in self.models)


@dataclass(frozen=True, slots=True)
class AliasTarget:
    """One weighted deployment/model pair an alias routes to."""

    provider: str  # a deployment name
    model: str  # the model name that deployment knows
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ModelAlias:
    """A public model name served by weighted targets, then by `fallbacks` (model or alias names,
    in order) once every target failed or the prompt does not fit."""

    name: str
    targets: tuple[AliasTarget, ...]
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LongContext:
    """The prices of a request whose prompt has more than `above_tokens` tokens (cache reads and
    writes included): every token of it, output too, costs these instead (Gemini 2.5/3 Pro and
    Claude Sonnet 4/4.5 with the 1M window bill so above 200k). USD per 1M tokens; a cache price
    not set is this tier's input price."""

    above_tokens: int
    input_per_1m: float
    output_per_1m: float
    cache_read_per_1m: float | None = None
    cache_write_per_1m: float | None = None

    def fields(self) -> dict[str, float]:
        out: dict[str, float] = {"above_tokens": self.above_tokens, "input_per_1m": self.input_per_1m,
                                 "output_per_1m": self.output_per_1m}
        if self.cache_read_per_1m is not None:
            out["cache_read_per_1m"] = self.cache_read_per_1m
        if self.cache_write_per_1m is not None:
            out["cache_write_per_1m"] = self.cache_write_per_1m
        return out


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. Cache reads/writes (prompt-caching upstreams report them apart from
    other input tokens) cost the input price unless set. `long_context`: the tier a long prompt is
    billed at instead, if the model has one."""

    input_per_1m: float
    output_per_1m: float
    cache_read_per_1m: float | None = None
    cache_write_per_1m: float | None = None
    per_image: float | None = None  # USD per generated image, for image answers without token usage
    long_context: LongContext | None = None
    per_web_search: float | None = None  # USD per server-side web search the upstream reports
    # Multipliers of every token price where the upstream bills more or less than its list price,
    # as (where, factor) pairs sorted by name: `flex` / `priority` (the service tier the answer says
    # served it), `regional` (a Vertex AI deployment outside the `global` endpoint). See MULTIPLIERS.
    multipliers: tuple[tuple[str, float], ...] = ()
    # USD per use of a hosted tool the upstream runs and bills per use, as (tool, USD) pairs sorted
    # by name: `file_search` (OpenAI's file_search_call), `container` (a code interpreter container)
    per_use: tuple[tuple[str, float], ...] = ()
    # USD per 1M tokens of a modality the upstream reports apart and bills at its own price, as
    # (kind, USD) pairs sorted by name (see MODALITIES); a kind not set costs the text price
    modalities: tuple[tuple[str, float], ...] = ()

    def multiplier(self, where: str) -> float | None:
        return next((f for w, f in self.multipliers if w == where), None)

    def per(self, tool: str) -> float | None:
        return next((usd for t, usd in self.per_use if t == tool), None)

    def modality(self, kind: str) -> float | None:
        return next((usd for k, usd in self.modalities if k == kind), None)

    def fields(self) -> dict[str, Any]:
        """The prices as a plain dict; cache prices only when set (older output stays as it was)."""
        out: dict[str, Any] = {"input_per_1m": self.input_per_1m, "output_per_1m": self.output_per_1m}
        if self.cache_read_per_1m is not None:
            out["cache_read_per_1m"] = self.cache_read_per_1m
        if self.cache_write_per_1m is not None:
            out["cache_write_per_1m"] = self.cache_write_per_1m
        if self.per_image is not None:
            out["per_image"] = self.per_image
        if self.long_context is not None:
            out["long_context"] = self.long_context.fields()
        if self.per_web_search is not None:
            out["per_web_search"] = self.per_web_search
        if self.multipliers:
            out["multipliers"] = dict(self.multipliers)
        if self.per_use:
            out["per_use"] = dict(self.per_use)
        if self.modalities:
            out["modalities"] = dict(self.modalities)
        return out


# Where a price multiplier applies: the service tiers an answer reports (OpenAI `service_tier`,
# Anthropic `usage.service_tier`, Vertex `trafficType`, Bedrock `serviceTier`, in OpenAI's words)
# and a Vertex AI deployment whose location is not `global`.
MULTIPLIERS = ("flex", "priority", "regional")
# Hosted tools billed per use (Price.per_use): OpenAI Responses' file_search_call items, and the
# code interpreter containers its code_interpreter_call items ran in. Web searches have their own
# price (per_web_search).
PER_USE = ("file_search", "container")
# Token prices by modality (Price.modalities), USD per 1M of the tokens an upstream reports as
# audio or image: input (OpenAI `prompt_tokens_details.audio_tokens`, image generation's
# `input_tokens_details.image_tokens`, Gemini's `promptTokensDetails`), cache reads of them (Gemini's
# `cacheTokensDetails`) and output (`completion_tokens_details.audio_tokens`, Gemini's
# `candidatesTokensDetails`). A kind without a price costs the text price of the same place.
MODALITIES = ("audio_input", "audio_cache_read", "audio_output", "image_input", "image_cache_read", "image_output")


@dataclass(frozen=True, slots=True)
class Team:
    """A team of keys, with its own budget if set."""

    id: str
    name: str
    budget: Budget | None = None


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A virtual key as the gateway checks it: models, team, expiry, limits and budget."""

    id: str
    name: str
    key_hash: str
    prefix: str
    models: tuple[str, ...] | None
    team_id: str | None
    expires_at: float | None
    revoked: bool = False
    rpm: int | None = None
    tpm: int | None = None
    budget: Budget | None = None

    def allows_model(self, model: str) -> bool:
        """Every model, a listed one, or one a listed pattern matches (looked for only when the
        name is not listed, so an exact name costs what it did before patterns)."""
        models = self.models
        if models is None or model in models:
            return True
        return any(is_model_pattern(m) and pattern_matches(m, model) for m in models)


@dataclass(frozen=True, slots=True)
class AdminToken:
    """A principal of the admin API. Only the sha256 of its secret is kept."""

    id: str
    name: str
    role: str
    key_hash: str
    prefix: str
    revoked: bool = False
    expires_at: float | None = None  # Unix time; None: never

    def usable(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class OidcSession:
    """A console session from OIDC sign-in (times are Unix seconds). `ended`: None while it runs to
    its expiry, else "signed_out" or "revoked"."""

    id: str
    user: str
    role: str
    started_at: float
    expires_at: float
    ended: str | None = None
    ended_at: float | None = None

    def status(self, now: float) -> str:
        return self.ended or ("active" if self.expires_at > now else "expired")


@dataclass(frozen=True, slots=True)
class McpServer:
    """A registered upstream MCP server; `headers` hold secret references (env:VAR or enc:...)."""

    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


def _empty() -> Mapping[str, object]:
    return MappingProxyType({})


_DERIVE: Mapping[str, int] = MappingProxyType({})  # "not given": ConfigState counts the keys itself


@dataclass(frozen=True, slots=True)
class ConfigState:
    """The whole config: entities by id, and the indexes a request or a command looks them up by."""

    providers: Mapping[str, Deployment] = field(default_factory=dict)
    pricing: Mapping[str, Price] = field(default_factory=dict)
    teams: Mapping[str, Team] = field(default_factory=dict)
    keys: Mapping[str, VirtualKey] = field(default_factory=dict)
    key_ids_by_hash: Mapping[str, str] = field(default_factory=dict)
    key_ids_by_name: Mapping[str, str] = field(default_factory=dict)
    team_ids_by_name: Mapping[str, str] = field(default_factory=dict)
    admin_tokens: Mapping[str, AdminToken] = field(default_factory=dict)
    admin_token_ids_by_hash: Mapping[str, str] = field(default_factory=dict)  # active tokens only
    admin_token_ids_by_name: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, ModelAlias] = field(default_factory=dict)
    routing: Mapping[str, str] = field(default_factory=dict)  # model or alias -> strategy (routing/strategies.py)
    # team id -> its active (not revoked) keys, teams with none left out. Kept by the fold per key
    # event; derived from `keys` when a state is built without it (never pass `keys` alone to
    # dataclasses.replace: the counts would stay those of the old keys).
    team_keys: Mapping[str, int] = field(default_factory=lambda: _DERIVE)
    mcp_servers: Mapping[str, McpServer] = field(default_factory=dict)
    # key id -> its MCP allow-list (`*`, `server`, `server/tool`); a key not here may use none
    mcp_access: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # console sessions by id, those past their expiry dropped as later session events arrive
    oidc_sessions: Mapping[str, OidcSession] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.team_keys is _DERIVE:
            if not self.keys:
                object.__setattr__(self, "team_keys", {})
                return
            from shieldes.projections.team_keys import team_key_counts  # it reads the key columns

            object.__setattr__(self, "team_keys", team_key_counts(self.keys))

    def key_by_hash(self, key_hash: str) -> VirtualKey | None:
        key_id = self.key_ids_by_hash.get(key_hash)
        return self.keys.get(key_id) if key_id is not None else None

    def find_key(self, name_or_id: str) -> VirtualKey | None:
        return by_name_or_id(self.keys, self.key_ids_by_name, name_or_id)

    def find_team(self, name_or_id: str) -> Team | None:
        return by_name_or_id(self.teams, self.team_ids_by_name, name_or_id)

    def admin_token_by_hash(self, token_hash: str) -> AdminToken | None:
        token_id = self.admin_token_ids_by_hash.get(token_hash)
        return self.admin_tokens.get(token_id) if token_id is not None else None

    def find_admin_token(self, name_or_id: str) -> AdminToken | None:
        return by_name_or_id(self.admin_tokens, self.admin_token_ids_by_name, name_or_id)

    def deployments_for(self, model: str) -> list[Deployment]:
        return [d for d in self.providers.values() if model in d.models]

    def all_models(self) -> list[str]:
        """Every model entry of every deployment, patterns included as given."""
        return sorted({m for d in self.providers.values() for m in d.models})

    def exact_models(self) -> list[str]:
        """The models deployments list by name: what /v1/models lists and prices are set for (a
        pattern is not a model)."""
        return sorted({m for d in self.providers.values() for m in d.models if not is_model_pattern(m)})


def by_name_or_id(items: Mapping[str, T], ids_by_name: Mapping[str, str], name_or_id: str) -> T | None:
    """An item of `items` (by id) given its id or its name."""
    item = items.get(name_or_id)
    if item is not None:
        return item
    item_id = ids_by_name.get(name_or_id)
    return items.get(item_id) if item_id is not None else None
