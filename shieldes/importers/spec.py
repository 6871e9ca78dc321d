"""What an importer produces: a format-neutral description of providers and prices.

Parsers (bifrost.py, litellm.py) are pure functions from a parsed file to an `ImportSpec`;
plan.py turns a spec plus the current state into shieldes commands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shieldes.errors import ShieldesError
from shieldes.projections.state import LongContext

# Where each kind's API lives when a file names no base URL. OpenAI-style URLs include the /v1
# prefix (as the openai SDK does); Anthropic's do not (as the anthropic SDK does).
DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}

# OpenAI-compatible upstreams both Bifrost and LiteLLM know by name, with their public endpoints.
# None: self-hosted, the file must give a base URL.
OPENAI_COMPATIBLE: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "together_ai": "https://api.together.xyz/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "xai": "https://api.x.ai/v1",
    "perplexity": "https://api.perplexity.ai",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "ollama": None,
    "vllm": None,
    "hosted_vllm": None,
    "sgl": None,
    "lm_studio": None,
    "custom_openai": None,
}


class ImportRejected(ShieldesError):
    """The source file cannot be imported as it stands; the message says what to change."""

    status = 400
    type = "invalid_request_error"
    code = "import_rejected"


@dataclass(frozen=True)
class SecretSpec:
    """A provider key as the source file gives it: an environment reference or a plaintext value."""

    env_var: str | None = None
    plaintext: str | None = None
    encrypted: bool = False  # a shieldes export's "encrypted": the key stored here is kept, none is given

    def describe(self) -> str:
        if self.env_var:
            return f"env:{self.env_var}"
        if self.encrypted:
            return "encrypted"
        return "plaintext key" if self.plaintext else "no key"


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    kind: str  # a shieldes provider kind (providers.kinds.PROVIDER_KINDS)
    base_url: str
    secret: SecretSpec
    models: tuple[str, ...]
    weight: float = 1.0
    origin: str = ""  # where in the source file it came from, for messages
    options: tuple[tuple[str, str], ...] = ()  # the kind's own settings (api_version, region, ...)
    responses: str | None = None  # how /v1/responses reaches it; None: the format does not say (translate)


@dataclass(frozen=True)
class PriceSpec:
    """USD per 1M tokens. Cache prices None: the file gives none (the ones in force are kept)."""

    model: str
    input_per_1m: float
    output_per_1m: float
    cache_read_per_1m: float | None = None
    cache_write_per_1m: float | None = None
    per_image: float | None = None  # USD per image (a shieldes export's; LiteLLM's file gives none)
    long_context: LongContext | None = None  # None: the file gives none (the one in force is kept)
    per_web_search: float | None = None  # USD per server-side web search
    multipliers: tuple[tuple[str, float], ...] = ()  # (where, factor); none: the ones in force are kept
    per_use: tuple[tuple[str, float], ...] = ()  # (tool, USD per use); none: the ones in force are kept
    modalities: tuple[tuple[str, float], ...] = ()  # (kind, USD per 1M); none: the ones in force are kept


@dataclass(frozen=True)
class AliasSpec:
    """A public model name (LiteLLM `model_name`, a model group) and the (provider, upstream model,
    weight) targets serving it, with ordered fallback names (LiteLLM `fallbacks`)."""

    name: str
    targets: tuple[tuple[str, str, float], ...]
    fallbacks: tuple[str, ...] | None = ()  # None: the format has none (Bifrost); those in force are kept
    origin: str = ""


@dataclass(frozen=True)
class BudgetSpec:
    amount_usd: float
    period: str


@dataclass(frozen=True)
class TeamSpec:
    """A team of a shieldes export: matched by name; a new one takes the file's id when it is free."""

    name: str
    id: str | None
    budget: BudgetSpec | None
    origin: str = ""


@dataclass(frozen=True)
class KeySpec:
    """A virtual key of a shieldes export (no secret): one present here (by id, else by name) takes
    the file's settings; one missing cannot be made without a new secret, so it is reported."""

    id: str | None
    name: str
    models: tuple[str, ...] | None
    team: str | None  # team name
    rpm: int | None
    tpm: int | None
    budget: BudgetSpec | None
    expires_at: float | None
    revoked: bool
    origin: str = ""
    mcp: tuple[str, ...] | None = None  # its MCP allow-list (`key --mcp`); None: none
    keeps_mcp: bool = False  # the file says nothing of MCP (version 1): the key's access here is kept
    # the stored hash of the key's secret, where the source has it (LiteLLM's): a missing key is created
    # with it, so clients keep their key; `prefix` is what lists show of it
    key_hash: str | None = None
    prefix: str | None = None
    secret_env: str | None = None  # the variable holding the key's secret (Bifrost `env.VAR`), read at import


@dataclass(frozen=True)
class McpServerSpec:
    """An MCP server of a shieldes export: its endpoint and its headers' values as the file gives
    them (an environment reference, "encrypted" for a value the export left out, or plaintext)."""

    name: str
    url: str
    headers: tuple[tuple[str, SecretSpec], ...]
    origin: str = ""


@dataclass
class ImportSpec:
    providers: list[ProviderSpec] = field(default_factory=list)
    prices: list[PriceSpec] = field(default_factory=list)
    aliases: list[AliasSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the import could not carry over
    skipped: list[str] = field(default_factory=list)  # entries left out (unsupported provider kinds)
    # What only the shieldes format says: routing strategies (model -> strategy), teams, keys, MCP servers.
    routing: list[tuple[str, str]] = field(default_factory=list)
    teams: list[TeamSpec] = field(default_factory=list)
    keys: list[KeySpec] = field(default_factory=list)
    mcp_servers: list[McpServerSpec] = field(default_factory=list)
    # The file lists the prices set (`pricing set`) exactly: a missing cache price is none, and a
    # price equal to the shipped default is still written (Bifrost and LiteLLM: compared with the
    # price in force, missing cache prices kept).
    exact_prices: bool = False
    # The file says each provider whole (the shieldes format): an existing provider takes the file's
    # endpoint, key and settings, as `shieldes provider update` would set them. Bifrost and LiteLLM:
    # a provider there is never repointed (the file describes another gateway's deployments).
    updates_providers: bool = False


def model_groups(publics: Mapping[str, list[tuple[str, str, float]]], origins: Mapping[str, str],
                 fallbacks: Mapping[str, list[str]] | None = None) -> list[AliasSpec]:
    """The aliases a file's public model names need: `publics` maps each name clients use to the
    (provider, upstream model, weight) entries serving it, in file order. A name served only under
    its own name by every entry needs no alias (plain routing serves it) unless it has fallbacks;
    any other becomes an alias whose weighted targets are all its entries (a model group).
    `fallbacks` None: the format has no fallbacks, so an alias keeps the ones it has."""
    out = []
    for public, entries in publics.items():
        if all(upstream == public for _, upstream, _ in entries) and public not in (fallbacks or {}):
            continue
        chain = None if fallbacks is None else tuple(fallbacks.get(public, ()))
        out.append(AliasSpec(public, tuple(dict.fromkeys(entries)), chain, origins[public]))
    return out


def entra_auth(options: dict[str, str], spec: ImportSpec, where: str) -> None:
    """An Azure deployment the file signs in with Entra ID: the nodes get their own tokens (the file's
    credentials are not imported), and the import says so."""
    options["auth"] = "entra"
    spec.notes.append(f"{where}: Entra ID credentials are not imported; each node gets tokens from "
                      "azure-identity's default chain (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
                      "managed identity)")


def normalize_openai_base(url: str) -> str:
    """OpenAI-style base URLs end in /v1 for shieldes; add it when a file omits it."""
    url = url.rstrip("/")
    tail = url.rsplit("/", 1)[-1]
    if tail.startswith("v") and tail[1:].isdigit():
        return url
    return url + "/v1"


def normalize_anthropic_base(url: str) -> str:
    url = url.rstrip("/")
    for tail in ("/v1/messages", "/v1"):
        if url.endswith(tail):
            return url[: -len(tail)]
    return url


def check_weight(weight: Any, where: str) -> float:
    ok = isinstance(weight, int | float) and not isinstance(weight, bool)
    if not ok or not math.isfinite(weight) or weight <= 0:
        raise ImportRejected(f"{where} must be a number > 0, got {weight!r}")
    return float(weight)


def safe_name(text: str) -> str:
    """A provider name shieldes accepts, derived from free text in the source file."""
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in text.strip())
    out = out.strip("-._") or "provider"
    return out[:100]
