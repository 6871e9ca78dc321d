"""ConfigState -> a document in shieldes, Bifrost or LiteLLM shape (pure). Never a plaintext secret:
environment references are kept, encrypted keys (and MCP header values) are left out and reported
in `warnings`, as is
anything the target format cannot say. Each shape imports back (importers/) to the same config.
Model patterns: LiteLLM writes `claude-*` as a wildcard route (model_name `claude-*`, model
`anthropic/claude-*`), which its importer reads back; Bifrost has "*" alone, so a narrower pattern
is widened to it with a warning."""

from __future__ import annotations

from typing import Any

from shieldes.importers.prices import MODALITY_FIELDS
from shieldes.importers.spec import OPENAI_COMPATIBLE
from shieldes.projections.state import Budget, ConfigState, Deployment, Price, is_model_pattern
from shieldes.providers.kinds import KINDS, base_url_for

EXPORT_FORMATS = ("shieldes", "bifrost", "litellm")
# The shieldes format's version: `config import` reads this one and older (a file without
# "version", from before it was written, reads as 1) and refuses a newer one. A change that an
# older shieldes would misread (a field whose absence meant something else) raises it.
# 2: "mcp_servers", and each key's "mcp" (absent from a version 1 file: the key's access is kept).
SHIELDES_EXPORT_VERSION = 2

# shieldes kind option -> the Bifrost `<kind>_key_config` field holding it
_BIFROST_SETTINGS = {
    "azure": {"api_version": "api_version"},
    "bedrock": {"region": "region"},
    "vertex": {"project": "project_id", "location": "region"},
}
# Entra ID client credentials, as Bifrost and LiteLLM name them (azure-identity reads AZURE_<FIELD>)
_ENTRA_FIELDS = ("client_id", "client_secret", "tenant_id")
# shieldes kind -> LiteLLM model prefix, and kind option -> litellm_params field
_LITELLM_PREFIX = {"vertex": "vertex_ai"}
_LITELLM_SETTINGS = {
    "azure": {"api_version": "api_version"},
    "bedrock": {"region": "aws_region_name"},
    "vertex": {"project": "vertex_project", "location": "vertex_location", "credentials_file": "vertex_credentials"},
}


def _env_var(ref: str | None) -> str | None:
    return ref[4:] if ref and ref.startswith("env:") else None


def _key_label(ref: str | None) -> str | None:
    if ref is None:
        return None
    return ref if ref.startswith("env:") else "encrypted"


def _budget(b: Budget | None) -> dict[str, Any] | None:
    return None if b is None else {"amount_usd": b.amount_usd, "period": b.period}


def _encrypted_warning(d: Deployment) -> str:
    return (f"provider {d.name!r} has an encrypted key, which is not exported; "
            "set its key by hand or switch it to an environment variable")


def _default_base(d: Deployment) -> str | None:
    """The endpoint the kind builds from its settings (None: the base URL must be written)."""
    spec = KINDS[d.kind]
    return base_url_for(spec, None, d.options) if spec.default_base_url is not None else None


def export_shieldes(state: ConfigState) -> tuple[dict[str, Any], list[str]]:
    teams = {t.id: t.name for t in state.teams.values()}
    doc: dict[str, Any] = {
        "format": "shieldes",
        "version": SHIELDES_EXPORT_VERSION,
        "providers": [
            {"name": d.name, "type": d.kind, "base_url": d.base_url, "api_key": _key_label(d.secret_ref),
             "models": list(d.models), "weight": d.weight, "responses": d.responses, "options": dict(d.options)}
            for d in sorted(state.providers.values(), key=lambda d: d.name)
        ],
        "aliases": [
            {"name": a.name, "targets": [{"provider": t.provider, "model": t.model, "weight": t.weight}
                                         for t in a.targets],
             "fallbacks": list(a.fallbacks)}
            for a in sorted(state.aliases.values(), key=lambda a: a.name)
        ],
        "pricing": [
            {"model": m, **p.fields()}
            for m, p in sorted(state.pricing.items())
        ],
        "routing": [{"model": m, "strategy": s} for m, s in sorted(state.routing.items())],
        "teams": [
            {"id": t.id, "name": t.name, "budget": _budget(t.budget)}
            for t in sorted(state.teams.values(), key=lambda t: t.name)
        ],
        "keys": [
            {"id": k.id, "name": k.name, "prefix": k.prefix, "models": list(k.models) if k.models else None,
             "team": teams.get(k.team_id) if k.team_id else None, "rpm": k.rpm, "tpm": k.tpm,
             "budget": _budget(k.budget), "expires_at": k.expires_at, "revoked": k.revoked,
             "mcp": list(state.mcp_access[k.id]) if state.mcp_access.get(k.id) else None}
            for k in sorted(state.keys.values(), key=lambda k: k.name)
        ],
        "mcp_servers": [
            {"name": m.name, "url": m.url, "headers": {h: _key_label(ref) for h, ref in m.headers.items()}}
            for m in sorted(state.mcp_servers.values(), key=lambda m: m.name)
        ],
    }
    warnings = [f"provider {d.name!r} has an encrypted key, written as \"encrypted\": importing this file keeps "
                f"the key of a provider {d.name!r} already there, and is refused where there is none; for another "
                "database write \"api_key\": \"env:VAR\" (a variable set on every node) in the file instead"
                for d in sorted(state.providers.values(), key=lambda d: d.name)
                if d.secret_ref and not d.secret_ref.startswith("env:")]
    warnings += [f"MCP server {m.name!r} has an encrypted header {h!r}, written as \"encrypted\": importing this "
                 f"file keeps that header's value of an MCP server {m.name!r} already there, and is refused where "
                 "there is none; for another database write \"env:VAR\" (a variable set on every node) as its "
                 "value in the file instead"
                 for m in sorted(state.mcp_servers.values(), key=lambda m: m.name)
                 for h, ref in m.headers.items() if not ref.startswith("env:")]
    return doc, warnings


def _mcp_left_out(state: ConfigState, fmt: str) -> list[str]:
    if not state.mcp_servers:
        return []
    return [f"{len(state.mcp_servers)} MCP server(s) and the keys' MCP access are not exported in the {fmt} "
            "format; `shieldes config export` (the shieldes format) carries them"]


def _alias_renames(state: ConfigState, warnings: list[str], fmt: str) -> dict[str, dict[str, str]]:
    """provider -> {alias name: upstream model}: aliases as both formats spell them, one target
    per provider, weighted by the provider's weight. What they cannot carry is warned about."""
    out: dict[str, dict[str, str]] = {}
    for a in sorted(state.aliases.values(), key=lambda a: a.name):
        for t in a.targets:
            d = state.providers.get(t.provider)
            if d is None or t.model not in d.models:
                continue  # a target no longer served routes nowhere
            renames = out.setdefault(t.provider, {})
            if a.name in renames:
                warnings.append(f"alias {a.name!r} has several targets on provider {t.provider!r}; "
                                f"{fmt} keeps the first ({renames[a.name]})")
                continue
            renames[a.name] = t.model
            if t.weight != d.weight:
                warnings.append(f"alias {a.name!r}: target {t.provider}/{t.model} weight {t.weight:g} becomes "
                                f"the provider's weight {d.weight:g} in {fmt}")
        if a.fallbacks and fmt == "bifrost":
            warnings.append(f"alias {a.name!r}: fallbacks {', '.join(a.fallbacks)} not exported (Bifrost "
                            "takes fallbacks per request)")
    return out


def _bifrost_models(d: Deployment, warnings: list[str]) -> list[str]:
    """A key's models as Bifrost matches them: exact names, and "*" alone for every model. A narrower
    pattern becomes "*": Bifrost requests name the provider (`anthropic/NAME`), so "*" is every name
    of that provider, the nearest it can say, and said in a warning."""
    out = []
    for m in d.models:
        if is_model_pattern(m) and m != "*":
            warnings.append(f"provider {d.name!r}: pattern {m!r} is exported as \"*\" (every model of the key): "
                            "Bifrost matches a key's models exactly or with \"*\" alone")
            m = "*"
        out.append(m)
    return out


def export_bifrost(state: ConfigState) -> tuple[dict[str, Any], list[str]]:
    providers: dict[str, Any] = {}
    warnings: list[str] = []
    renames = _alias_renames(state, warnings, "bifrost")
    for d in sorted(state.providers.values(), key=lambda d: d.name):
        var = _env_var(d.secret_ref)
        if d.secret_ref and var is None:
            warnings.append(_encrypted_warning(d))
        aliases = renames.get(d.name, {})
        key: dict[str, Any] = {"name": d.name, "value": f"env.{var}" if var else "",
                               "models": list(dict.fromkeys([*_bifrost_models(d, warnings), *aliases])),
                               "weight": d.weight}
        if aliases:
            key["aliases"] = aliases
        entry: dict[str, Any] = {"keys": [key]}
        if d.kind in _BIFROST_SETTINGS:
            settings = {field: d.options[o] for o, field in _BIFROST_SETTINGS[d.kind].items() if o in d.options}
            if d.kind == "azure":
                settings["endpoint"] = d.base_url
                auth = d.options.get("auth", "api-key")
                if auth == "entra":  # the variables azure-identity's chain reads on each node
                    settings.update({f: f"env.AZURE_{f.upper()}" for f in _ENTRA_FIELDS})
                elif auth != "api-key":
                    warnings.append(f"provider {d.name!r}: --auth {auth} is not exported (Bifrost sends the "
                                    "key as api-key or uses Entra ID client credentials)")
            if d.options.get("credentials_file"):
                warnings.append(f"provider {d.name!r}: --credentials-file is not exported (Bifrost takes the "
                                "credentials JSON as auth_credentials)")
            key[f"{d.kind}_key_config"] = settings
        if d.kind != "azure" and d.base_url != _default_base(d):
            # Bifrost appends /v1/... itself, so its OpenAI-style base URLs stop before /v1.
            entry["network_config"] = {"base_url": d.base_url.removesuffix("/v1") if d.kind == "openai"
                                       else d.base_url}
            if d.kind == "openai" and not d.base_url.endswith("/v1"):
                warnings.append(f"provider {d.name!r}: its base URL {d.base_url} does not end in /v1, and Bifrost "
                                f"adds /v1 to the one written (it calls {d.base_url}/v1/chat/completions; shieldes "
                                f"calls {d.base_url}/chat/completions, and imports it back with /v1): check that "
                                "the endpoint serves that path")
        if d.name != d.kind and d.name not in OPENAI_COMPATIBLE:
            entry["custom_provider_config"] = {"base_provider_type": d.kind}
        providers[d.name] = entry
    return {"providers": providers}, warnings + _mcp_left_out(state, "Bifrost")


def _litellm_params(d: Deployment, model: str, state: ConfigState) -> dict[str, Any]:
    params: dict[str, Any] = {"model": f"{_LITELLM_PREFIX.get(d.kind, d.kind)}/{model}"}
    if d.kind in ("openai", "anthropic", "azure") or d.base_url != _default_base(d):
        params["api_base"] = d.base_url
    for option, field in _LITELLM_SETTINGS.get(d.kind, {}).items():
        if option in d.options:
            params[field] = d.options[option]
    if d.options.get("auth") == "entra":
        params.update({f: f"os.environ/AZURE_{f.upper()}" for f in _ENTRA_FIELDS})
    var = _env_var(d.secret_ref)
    if var:
        params["api_key"] = f"os.environ/{var}"
    if d.weight != 1.0:
        params["weight"] = d.weight
    for limit in ("rpm", "tpm"):  # LiteLLM's per-deployment quotas (the import reads them back)
        if limit in d.options:
            params[limit] = int(d.options[limit])
    price = state.pricing.get(model)
    if price is not None:
        params["input_cost_per_token"] = price.input_per_1m / 1_000_000
        params["output_cost_per_token"] = price.output_per_1m / 1_000_000
        if price.cache_read_per_1m is not None:
            params["cache_read_input_token_cost"] = price.cache_read_per_1m / 1_000_000
        if price.cache_write_per_1m is not None:
            params["cache_creation_input_token_cost"] = price.cache_write_per_1m / 1_000_000
        long = price.long_context
        if long is not None and long.above_tokens == 200_000:  # LiteLLM names only that threshold
            params["input_cost_per_token_above_200k_tokens"] = long.input_per_1m / 1_000_000
            params["output_cost_per_token_above_200k_tokens"] = long.output_per_1m / 1_000_000
            if long.cache_read_per_1m is not None:
                params["cache_read_input_token_cost_above_200k_tokens"] = long.cache_read_per_1m / 1_000_000
            if long.cache_write_per_1m is not None:
                params["cache_creation_input_token_cost_above_200k_tokens"] = long.cache_write_per_1m / 1_000_000
        params.update(_litellm_extras(price))
    return params


def _litellm_extras(price: Price) -> dict[str, Any]:
    """A price's service-tier multipliers and hosted tool prices in LiteLLM's fields: the flex and
    priority prices of each token price (`input_cost_per_token_flex`, ...), the per-search price for
    every search context size, the file search price per 1,000 calls, the container price per
    session, the audio and image token prices. The regional multiplier has no LiteLLM field
    (export_litellm warns), nor has the price of cached image tokens."""
    out: dict[str, Any] = {}
    for tier in ("flex", "priority"):
        factor = price.multiplier(tier)
        if factor is None or price.input_per_1m <= 0:  # LiteLLM's tier price is read over the input price
            continue
        out[f"input_cost_per_token_{tier}"] = price.input_per_1m * factor / 1_000_000
        out[f"output_cost_per_token_{tier}"] = price.output_per_1m * factor / 1_000_000
        if price.cache_read_per_1m is not None:
            out[f"cache_read_input_token_cost_{tier}"] = price.cache_read_per_1m * factor / 1_000_000
    if price.per_web_search is not None:
        out["search_context_cost_per_query"] = {f"search_context_size_{size}": price.per_web_search
                                                for size in ("low", "medium", "high")}
    for field, kind in MODALITY_FIELDS:
        usd = price.modality(kind)
        if usd is not None:
            out[field] = usd / 1_000_000
    file_search, container = price.per("file_search"), price.per("container")
    if file_search is not None:
        out["file_search_cost_per_1k_calls"] = round(file_search * 1000, 9)
    if container is not None:
        out["code_interpreter_cost_per_session"] = container
    return out


def export_litellm(state: ConfigState) -> tuple[dict[str, Any], list[str]]:
    model_list: list[dict[str, Any]] = []
    warnings: list[str] = []
    renames = _alias_renames(state, warnings, "litellm")
    for d in sorted(state.providers.values(), key=lambda d: d.name):
        if d.secret_ref and _env_var(d.secret_ref) is None:
            warnings.append(_encrypted_warning(d))
        pairs = [(m, m) for m in d.models] + list(renames.get(d.name, {}).items())
        quota = [o for o in ("rpm", "tpm") if o in d.options]
        if quota and len({m for _, m in pairs}) > 1:
            warnings.append(f"provider {d.name!r}: its {'/'.join(quota)} quota is shared by its models, and LiteLLM "
                            "counts an entry's rpm/tpm for that entry alone: each of its entries carries the whole "
                            "quota (divide it among them in the file if the sum must hold)")
        model_list.extend({"model_name": public, "litellm_params": _litellm_params(d, model, state)}
                          for public, model in pairs)
    exported = {m for d in state.providers.values() for m in d.models}
    for model in sorted(m for m in exported if state.pricing.get(m) and state.pricing[m].multiplier("regional")):
        warnings.append(f"{model}: its regional multiplier is not exported (LiteLLM has no such field): set it "
                        f"again after import with `shieldes pricing set {model} ... --multiplier regional=X`")
    for pattern in sorted(m for m in state.pricing if is_model_pattern(m) and m not in exported):
        warnings.append(f"price pattern {pattern!r} not exported: LiteLLM prices a model_list entry, and no "
                        "provider serves that pattern (set it again after import: `shieldes pricing set`)")
    doc: dict[str, Any] = {"model_list": model_list}
    fallbacks = [{a.name: list(a.fallbacks)} for a in sorted(state.aliases.values(), key=lambda a: a.name)
                 if a.fallbacks]
    if fallbacks:
        doc["router_settings"] = {"fallbacks": fallbacks}
    return doc, warnings + _mcp_left_out(state, "LiteLLM")


def export(state: ConfigState, fmt: str) -> tuple[dict[str, Any], list[str]]:
    if fmt == "bifrost":
        return export_bifrost(state)
    if fmt == "litellm":
        return export_litellm(state)
    return export_shieldes(state)
