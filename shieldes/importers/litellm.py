"""LiteLLM proxy config.yaml -> ImportSpec (pure).

LiteLLM lists deployments in `model_list`: each entry has a public `model_name` and
`litellm_params` {model: "<provider>/<upstream model>", api_base, api_key, weight, ...}; keys are
`os.environ/VAR` references or literal values. Entries that share provider, endpoint, key and
weight become one shieldes provider serving several models; an entry with `rpm`/`tpm` (a deployment's
own quota) is a provider of its own with those limits. Prices come from
`input_cost_per_token` / `output_cost_per_token` and the cache read/write costs (in
litellm_params or model_info). A `model_name`
that differs from its upstream models, several entries sharing one `model_name` (a model group),
or `fallbacks` / `context_window_fallbacks` (router_settings or litellm_settings) become a shieldes
model alias with weighted targets and ordered fallbacks, so clients keep the names they use.
A wildcard route (`model_name: claude-*` to `anthropic/claude-*`, `*` to `openai/*`, `anthropic/*`
to `anthropic/*`) gives its provider the model pattern (litellm_wildcards). How one entry maps to a
provider is litellm_deployments', the router settings litellm_router's, keys and teams litellm_keys'.
"""

from __future__ import annotations

from typing import Any

from shieldes.importers.litellm_deployments import (
    CLOUD,
    OLLAMA,
    Group,
    azure_ai_refusal,
    cloud_provider,
    entry_base_url,
    entry_secret,
    kind_of,
    limits,
    split_model,
)
from shieldes.importers.litellm_keys import looks_like_litellm_keys, parse_litellm_keys
from shieldes.importers.litellm_router import (
    access_groups,
    default_fallbacks,
    fallbacks_of,
    group_aliases,
    router_settings,
)
from shieldes.importers.litellm_wildcards import add_pattern, check_pinning, overlaps, wildcard
from shieldes.importers.prices import PRICE_FIELDS, litellm_price
from shieldes.importers.settings_notes import PER_REQUEST, Found, settings_notes
from shieldes.importers.spec import (
    ImportRejected,
    ImportSpec,
    PriceSpec,
    ProviderSpec,
    SecretSpec,
    check_weight,
    model_groups,
    safe_name,
)
from shieldes.usage.catalog import CatalogEntry, shipped

# litellm_params the import maps; any other is named in a note (settings_notes)
_HANDLED_PARAMS = frozenset((
    "model", "custom_llm_provider", "api_base", "api_key", "api_version", "weight", "rpm", "tpm", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "aws_profile_name", "aws_region_name", "aws_role_name",
    "aws_session_name", "aws_web_identity_token", "aws_sts_endpoint", "aws_external_id",
    "aws_bedrock_runtime_endpoint", "vertex_project",
    "vertex_location", "vertex_ai_project", "vertex_ai_location", "vertex_credentials", "tenant_id", "client_id",
    "client_secret", *PRICE_FIELDS))


def _add_entry(groups: dict[Group, list[str]], origins: dict[Group, str],
               publics: dict[str, list[tuple[Group, str, float]]], public_origin: dict[str, str],
               group: Group, public: str, upstream: str, weight: float, where: str) -> None:
    models = groups.setdefault(group, [])
    origins.setdefault(group, where)
    if upstream not in models:
        models.append(upstream)
    publics.setdefault(public, []).append((group, upstream, weight))
    public_origin.setdefault(public, where)


def parse_litellm(doc: Any) -> ImportSpec:
    if looks_like_litellm_keys(doc):  # LiteLLM's keys and teams (its admin API's lists), no models
        spec = ImportSpec()
        parse_litellm_keys(doc, spec)
        return spec
    if not isinstance(doc, dict) or not isinstance(doc.get("model_list"), list):
        raise ImportRejected("not a LiteLLM config.yaml: expected a top-level \"model_list\" list (or LiteLLM's "
                             "keys: the {\"keys\": [...]} GET /key/list?return_full_object=true answers)")
    spec = ImportSpec()
    groups: dict[Group, list[str]] = {}
    origins: dict[Group, str] = {}
    # public model_name -> (provider group, upstream model, weight) of each entry, in file order
    publics: dict[str, list[tuple[Group, str, float]]] = {}
    public_origin: dict[str, str] = {}
    # wildcard entries clients reach as PREFIX/NAME: (group, pattern, where)
    pinnings: list[tuple[Group, str, str]] = []
    found: Found = []  # timeout, retry and breaker settings: node settings in shieldes
    for i, entry in enumerate(doc["model_list"]):
        where = f"model_list[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params"), dict):
            raise ImportRejected(f"{where} needs model_name and a litellm_params mapping")
        params: dict[str, Any] = entry["litellm_params"]
        spec.notes.extend(settings_notes(f"{where}.litellm_params", params, found, _HANDLED_PARAMS, PER_REQUEST))
        model_ref = params.get("model")
        if not isinstance(model_ref, str) or not model_ref.strip():
            raise ImportRejected(f"{where}.litellm_params.model must be a string like openai/gpt-4o")
        prefix, upstream = split_model(model_ref.strip(), params.get("custom_llm_provider"), where)
        public = str(entry.get("model_name") or upstream)
        pinned = wildcard(public, prefix, upstream, model_ref.strip(), where) if "*" in public + model_ref else None
        options: tuple[tuple[str, str], ...] = ()
        quota = limits(entry, where)
        # a deployment with its own quota is a provider of its own; entries naming the same deployment (one
        # model of one endpoint and key, under several model_names) are that one deployment, with one quota
        own = upstream if quota else ""
        if prefix in CLOUD:
            kind, base_url, options, upstream = cloud_provider(prefix, upstream, params, where, spec)
            entra = dict(options).get("auth") == "entra" and not params.get("api_key")  # tokens, not a key
            # a bedrock entry's api_key is a Bedrock API key (sent as a bearer token instead of signing)
            secret = entry_secret(params.get("api_key"), prefix, base_url, where, spec) if kind in (
                "azure", "gemini", "bedrock") and not entra else SecretSpec()
        else:
            if prefix == "azure_ai" and (unsupported := azure_ai_refusal(params, where)):
                spec.skipped.append(f"{where} ({model_ref}): {unsupported}")
                continue
            known, default_base = kind_of(prefix)
            if known is None:
                spec.skipped.append(f"{where} ({model_ref}): LiteLLM provider {prefix!r} is not supported "
                                    "by shieldes (supported: openai, anthropic, azure, bedrock, gemini, vertex_ai "
                                    "and OpenAI-compatible APIs)")
                continue
            kind = known
            base_url = entry_base_url(kind, params.get("api_base"), default_base, where, native=prefix in OLLAMA)
            # an Azure AI endpoint is the file's, but its key LiteLLM reads from AZURE_AI_API_KEY when none is given
            secret = entry_secret(params.get("api_key"), prefix, base_url if prefix == "azure_ai" else default_base,
                                  where, spec)
        weight = check_weight(params.get("weight", 1), f"{where}.litellm_params.weight")
        group = (prefix, kind, base_url, secret, weight, tuple(sorted(options + quota)), own)
        if pinned is None:
            _add_entry(groups, origins, publics, public_origin, group, public, upstream, weight, where)
        else:
            add_pattern(groups, origins, pinnings, group, upstream, pinned, where)
        _keep_price(spec, _price(upstream, params, entry.get("model_info"), where, spec), where)
    used: dict[str, int] = {}
    names: dict[Group, str] = {}
    for group, models in groups.items():
        prefix, kind, base_url, secret, weight, options, own = group
        # a deployment with its own quota is named after its model too, so that it does not take the name
        # (and, merged into an existing provider of that name, the quota) of the prefix's other models
        base = f"{prefix}-{models[0]}" if own else prefix
        n = used[base] = used.get(base, 0) + 1
        name = names[group] = safe_name(base if n == 1 else f"{base}-{n}")
        spec.providers.append(ProviderSpec(name, kind, base_url, secret, tuple(models), weight, origins[group],
                                           options))
    for group, pattern, where in pinnings:
        check_pinning(group, names[group], pattern, where, spec)
    overlaps(groups, names, pinnings, spec)
    fallbacks = fallbacks_of(doc)
    # default_fallbacks: LiteLLM's fallbacks for every model group that has none of its own
    for public in publics if (default := default_fallbacks(doc)) else ():
        chain = [n for n in default if n != public]
        if public not in fallbacks and chain:
            fallbacks[public] = chain
    named = {public: [(names[g], upstream, w) for g, upstream, w in entries] for public, entries in publics.items()}
    spec.aliases.extend(model_groups(named, public_origin, fallbacks))
    spec.aliases.extend(group_aliases(doc, named, fallbacks, spec))
    for public in fallbacks:
        if public not in publics:
            spec.notes.append(f"fallbacks for {public!r} ignored: no model_list entry has that model_name")
    router_settings(doc, named, spec, found)
    access_groups(doc["model_list"], spec)
    return spec



def _keep_price(spec: ImportSpec, price: PriceSpec | None, where: str) -> None:
    """`price` for the import. LiteLLM prices each deployment, shieldes each upstream model (every
    deployment serving it alike): where two entries price one model differently, the later one is
    kept and a note says so."""
    if price is None or price in spec.prices:
        return
    earlier = next((p for p in spec.prices if p.model == price.model), None)
    if earlier is not None:
        spec.prices.remove(earlier)
        spec.notes.append(
            f"{where}: {price.model} is priced ${price.input_per_1m:g}/${price.output_per_1m:g} per 1M input/output "
            f"tokens here and ${earlier.input_per_1m:g}/${earlier.output_per_1m:g} by an earlier entry; shieldes "
            "prices a model once for every deployment serving it, so this later price is imported: set another "
            f"with `shieldes pricing set {price.model} --input USD --output USD`")
    spec.prices.append(price)


def _price(model: str, params: dict[str, Any], info: Any, where: str, spec: ImportSpec) -> PriceSpec | None:
    """Per-token prices from litellm_params, else model_info (input, output, cache read/write), else
    the price of model_info.base_model: LiteLLM costs a deployment (an Azure one is named as its owner
    likes) as that model, so it is priced so here, or requests from budgeted keys would be refused."""
    given = litellm_price(model, [params] + ([info] if isinstance(info, dict) else []), where, spec.notes)
    base = info.get("base_model") if isinstance(info, dict) else None
    if given is not None or not isinstance(base, str) or not base.strip():
        return given
    found = base_price(base.strip())
    if found is None:
        spec.notes.append(f"{where}.model_info.base_model {base!r} has no price in shieldes' catalog: price the "
                          f"deployment with `shieldes pricing set {model} --input USD_PER_1M --output USD_PER_1M` "
                          "(or give input_cost_per_token/output_cost_per_token in the entry), or requests for it "
                          "from keys or teams with a budget are refused")
        return None
    name, entry = found
    if name == model:
        return None  # the catalog prices the deployment's own name already
    return PriceSpec(model, entry.input_per_1m, entry.output_per_1m, entry.cache_read_per_1m, entry.cache_write_per_1m,
                     entry.per_image, entry.long_context, entry.per_web_search, entry.multipliers, entry.per_use,
                     entry.modalities)


def base_price(base: str) -> tuple[str, CatalogEntry] | None:
    """The catalog's price for a LiteLLM base_model (`azure/gpt-4o-2024-08-06`, `gpt-35-turbo`): the
    name without its provider prefix, Azure's `gpt-35` spelled as OpenAI's `gpt-3.5`."""
    name = base.rpartition("/")[2]
    for candidate in (base, name, name.replace("gpt-35", "gpt-3.5")):
        entry = shipped().get(candidate)
        if entry is not None:
            return candidate, entry
    return None
