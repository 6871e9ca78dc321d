"""Every event type: frozen, typed, with a stable `type` name and a `version`.

A changed shape gets a new version and an upcaster in `codec.py`; the names here never change.
Money is integer nano-USD (1e-9 USD) in usage events so sums are exact in Python and SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

CONFIG_STREAM = "config"
ROLLUP_STREAM = "usage-rollup"
USAGE_STREAM_PREFIX = "usage:"


def usage_stream(node_id: str) -> str:
    return USAGE_STREAM_PREFIX + node_id


@dataclass(frozen=True)
class Event:
    """The base of every event type: `TYPE` names it in the log, `VERSION` is its shape's."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1


# --- providers (deployments) -------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderAdded(Event):
    """A deployment was added: an upstream endpoint of a provider kind serving `models`."""

    TYPE: ClassVar[str] = "provider.added"
    name: str
    kind: str
    base_url: str
    secret_ref: str | None  # "env:VAR" or "enc:<fernet token>", never a plaintext key
    models: tuple[str, ...]
    weight: float = 1.0
    responses: str = "translate"  # absent in older events: they replay as translate
    # The kind's own settings (azure api_version, bedrock region, vertex project/location...).
    # Added without a version bump: older events simply have none, and a node that predates a
    # kind cannot serve it whatever the options say.
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderUpdated(Event):
    """Carries the full new values of the updatable fields (no 'unchanged' ambiguity)."""

    TYPE: ClassVar[str] = "provider.updated"
    name: str
    base_url: str
    secret_ref: str | None
    models: tuple[str, ...]
    weight: float
    responses: str | None = None  # None (and older events): unchanged
    options: dict[str, str] | None = None  # None (events written before options existed): unchanged


@dataclass(frozen=True)
class ProviderRemoved(Event):
    """A deployment was removed; requests no longer reach it."""

    TYPE: ClassVar[str] = "provider.removed"
    name: str


# --- model aliases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelAliasSet(Event):
    """A public model name and what serves it (replaces an earlier alias of that name).
    `targets`: {"provider", "model", "weight"} each; `fallbacks`: model or alias names tried in
    order when every target failed or the prompt does not fit."""

    TYPE: ClassVar[str] = "model_alias.set"
    name: str
    targets: tuple[dict[str, Any], ...]
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelAliasRemoved(Event):
    """A public model alias was removed."""

    TYPE: ClassVar[str] = "model_alias.removed"
    name: str


# --- pricing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PricingSet(Event):
    """USD per 1M tokens. The cache prices were added as optional fields (None: bill cache tokens
    as input tokens): older events decode unchanged and older readers ignore the new keys, so the
    shape stays at version 1. `per_image` (USD per generated image, for image answers that carry
    no token usage) was added the same way, and so was the long-context tier (`long_*`: the prices
    of a request whose prompt has more than `long_above_tokens` tokens; an older reader bills such
    a request at the base prices)."""

    TYPE: ClassVar[str] = "pricing.set"
    model: str
    input_per_1m: float
    output_per_1m: float
    cache_read_per_1m: float | None = None
    cache_write_per_1m: float | None = None
    per_image: float | None = None
    long_above_tokens: int | None = None
    long_input_per_1m: float | None = None
    long_output_per_1m: float | None = None
    long_cache_read_per_1m: float | None = None
    long_cache_write_per_1m: float | None = None
    per_web_search: float | None = None  # USD per server-side web search (added the same way)
    # {where: factor} (state.MULTIPLIERS), added the same way: an older reader bills at list price
    multipliers: dict[str, float] | None = None
    per_use: dict[str, float] | None = None  # {tool: USD per use} (state.PER_USE), added the same way
    # {kind: USD per 1M tokens} (state.MODALITIES), added the same way: an older reader bills every
    # token at its text price
    modalities: dict[str, float] | None = None


@dataclass(frozen=True)
class PricingUnset(Event):
    """The `pricing.set` price of `model` (a name or a pattern) is gone: the shipped catalog's
    price, or a pattern's, applies again."""

    TYPE: ClassVar[str] = "pricing.unset"
    model: str


@dataclass(frozen=True)
class RoutingSet(Event):
    """How requests for `model` (a model or alias name) choose among its deployments; None: the
    default strategy again."""

    TYPE: ClassVar[str] = "routing.set"
    model: str
    strategy: str | None


# --- teams -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamCreated(Event):
    """A team was created: keys may belong to it and it may have a budget."""

    TYPE: ClassVar[str] = "team.created"
    id: str
    name: str


# --- virtual keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualKeyCreated(Event):
    """A virtual key was created (only its secret's hash is stored)."""

    TYPE: ClassVar[str] = "virtual_key.created"
    id: str
    name: str
    key_hash: str  # sha256 hex of the secret; the secret itself is shown once and never stored
    prefix: str  # short display prefix, e.g. "sk-shd-3f9a"
    models: tuple[str, ...] | None  # None: every model
    team_id: str | None = None
    expires_at: float | None = None  # unix seconds
    # MCP servers and tools it may use (`server`, `server/tool`, `*`); None or (): none. Added
    # without a version bump: older events have none, and older readers ignore it.
    mcp: tuple[str, ...] | None = None


@dataclass(frozen=True)
class VirtualKeyUpdated(Event):
    """A key's models, team or expiry changed (the full new values of the three), or its MCP access."""

    TYPE: ClassVar[str] = "virtual_key.updated"
    id: str
    models: tuple[str, ...] | None
    team_id: str | None
    expires_at: float | None
    mcp: tuple[str, ...] | None = None  # the full new MCP access; None (and older events): unchanged


@dataclass(frozen=True)
class VirtualKeyRevoked(Event):
    """A key was revoked: it authenticates nothing from then on."""

    TYPE: ClassVar[str] = "virtual_key.revoked"
    id: str


@dataclass(frozen=True)
class VirtualKeyRotated(Event):
    """A key's secret was replaced: the old secret stops working, the new hash takes its place."""

    TYPE: ClassVar[str] = "virtual_key.rotated"
    id: str
    key_hash: str
    prefix: str


# --- budgets and limits ------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetSet(Event):
    """A key's or team's budget was set (or, in events before budget.removed, removed)."""

    TYPE: ClassVar[str] = "budget.set"
    subject_kind: str  # "key" | "team"
    subject_id: str
    amount_usd: float | None  # None removed the budget (events before budget.removed existed)
    period: str  # "1d" | "30d" | "1mo"


@dataclass(frozen=True)
class BudgetRemoved(Event):
    """A key's or team's budget was removed."""

    TYPE: ClassVar[str] = "budget.removed"
    subject_kind: str  # "key" | "team"
    subject_id: str


@dataclass(frozen=True)
class RateLimitSet(Event):
    """A key's requests and tokens per minute (None: no limit)."""

    TYPE: ClassVar[str] = "rate_limit.set"
    key_id: str
    rpm: int | None
    tpm: int | None


# --- admin tokens (principals of the admin API) --------------------------------------------------


@dataclass(frozen=True)
class AdminTokenCreated(Event):
    """An admin API token was created with a role (only its hash is stored)."""

    TYPE: ClassVar[str] = "admin_token.created"
    id: str
    name: str
    role: str  # "admin" | "operator" | "viewer" | "auditor"
    key_hash: str  # sha256 hex of the token (named like a virtual key's hash so `audit_log` redacts it)
    prefix: str  # short display prefix
    # Unix time it stops working; None (and events written before expiry existed): never. Added
    # without a version bump: a node of the previous release ignores it (docs/deploy.md)
    expires_at: float | None = None


@dataclass(frozen=True)
class AdminTokenRevoked(Event):
    """An admin API token was revoked."""

    TYPE: ClassVar[str] = "admin_token.revoked"
    id: str


# --- console sessions (OIDC sign-in) --------------------------------------------------------------


@dataclass(frozen=True)
class OidcSessionStarted(Event):
    """A console session began after an OIDC sign-in. Its token is never stored: it is signed, and
    names this id, so every node can refuse it once the session has ended."""

    TYPE: ClassVar[str] = "oidc_session.started"
    id: str
    name: str  # the user as the audit log names them (`oidc:<name>`): email, username or subject
    role: str
    at: float  # Unix time of the sign-in
    expires_at: float  # Unix time the session's token expires


@dataclass(frozen=True)
class OidcSessionEnded(Event):
    """A console session was ended before its expiry: its user signed out, or an admin revoked it."""

    TYPE: ClassVar[str] = "oidc_session.ended"
    id: str
    name: str  # the session's user
    reason: str  # "signed_out" | "revoked"
    at: float


# --- MCP servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class McpServerAdded(Event):
    """An upstream MCP server was registered: clients reach it at /mcp/{name}."""

    TYPE: ClassVar[str] = "mcp_server.added"
    name: str
    url: str  # its Streamable HTTP endpoint
    # header name -> "env:VAR" or "enc:<token>" (as provider keys: never a plaintext value)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class McpServerUpdated(Event):
    """An MCP server's URL and headers, their full new values (`secrets rotate` re-encrypts headers)."""

    TYPE: ClassVar[str] = "mcp_server.updated"
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class McpServerRemoved(Event):
    """An MCP server was removed; /mcp/{name} no longer reaches it."""

    TYPE: ClassVar[str] = "mcp_server.removed"
    name: str


# --- usage -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageDelta:
    """Usage of one key on one deployment and model within one UTC hour. Tokens in the token
    fields only; what media calls are billed in besides tokens in its own unit: images billed per
    image, seconds of audio (whisper-1), characters of input (tts-1). The hosted tool uses billed
    per use (web searches, file searches, code interpreter containers) and their part of
    `cost_nusd` (`tools_nusd`). Those seven are optional in the stored shape (absent when zero, so
    a delta of an earlier release reads as zero of them, and a node of an earlier release reads a
    delta that has them, ignoring them)."""

    key_id: str
    team_id: str | None
    provider: str
    model: str
    hour: int  # unix hour: floor(unix seconds / 3600)
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_nusd: int
    images: int = 0
    audio_seconds: int = 0
    characters: int = 0
    web_searches: int = 0
    file_searches: int = 0
    containers: int = 0
    tools_nusd: int = 0  # the part of cost_nusd the hosted tool uses cost


@dataclass(frozen=True)
class UsageRecorded(Event):
    """One batched flush of one node. (node_id, epoch, seq) makes the append idempotent."""

    TYPE: ClassVar[str] = "usage.recorded"
    node_id: str
    epoch: int
    seq: int
    deltas: tuple[UsageDelta, ...]


@dataclass(frozen=True)
class UsageRolledUp(Event):
    """Compaction output: replaces raw usage events; totals equal exactly what it replaced."""

    TYPE: ClassVar[str] = "usage.rolled_up"
    replaced_events: int
    first_position: int
    last_position: int
    deltas: tuple[UsageDelta, ...]


CONFIG_EVENTS: tuple[type[Event], ...] = (
    ProviderAdded,
    ProviderUpdated,
    ProviderRemoved,
    ModelAliasSet,
    ModelAliasRemoved,
    PricingSet,
    PricingUnset,
    RoutingSet,
    TeamCreated,
    VirtualKeyCreated,
    VirtualKeyUpdated,
    VirtualKeyRevoked,
    VirtualKeyRotated,
    BudgetSet,
    BudgetRemoved,
    RateLimitSet,
    AdminTokenCreated,
    AdminTokenRevoked,
    McpServerAdded,
    McpServerUpdated,
    McpServerRemoved,
    OidcSessionStarted,
    OidcSessionEnded,
)
USAGE_EVENTS: tuple[type[Event], ...] = (UsageRecorded, UsageRolledUp)
ALL_EVENTS: tuple[type[Event], ...] = CONFIG_EVENTS + USAGE_EVENTS
