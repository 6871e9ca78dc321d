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
to `anthropic/*`) gives its provider the model pattern (see `wildcard`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shieldes.importers.litellm_keys import looks_like_litellm_keys, parse_litellm_keys
from shieldes.importers.prices import PRICE_FIELDS, litellm_price
from shieldes.importers.settings_notes import PER_REQUEST, Found, litellm_strategy, node_notes, settings_notes
from shieldes.importers.spec import (
    DEFAULT_BASE_URLS,
    OPENAI_COMPATIBLE,
    AliasSpec,
    ImportRejected,
    ImportSpec,
    PriceSpec,
    ProviderSpec,
    SecretSpec,
    check_weight,
    model_groups,
    normalize_anthropic_base,
    normalize_openai_base,
    safe_name,
)
from shieldes.providers.kinds import KINDS, base_url_for
from shieldes.usage.catalog import CatalogEntry, shipped

# The environment variable LiteLLM reads when an entry names no api_key.
_DEFAULT_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "xai": "XAI_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
    "azure": "AZURE_API_KEY",
    "azure_ai": "AZURE_AI_API_KEY",
    "gemini": "GEMINI_API_KEY",
}


# LiteLLM's prefixes for an Ollama server, which LiteLLM calls through Ollama's own API at api_base
_OLLAMA = ("ollama", "ollama_chat")
# litellm_params the import maps; any other is named in a note (settings_notes)
_HANDLED_PARAMS = frozenset((
    "model", "custom_llm_provider", "api_base", "api_key", "api_version", "weight", "rpm", "tpm", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "aws_profile_name", "aws_region_name", "aws_role_name",
    "aws_session_name", "aws_web_identity_token", "aws_sts_endpoint", "aws_external_id",
    "aws_bedrock_runtime_endpoint", "vertex_project",
    "vertex_location", "vertex_ai_project", "vertex_ai_location", "vertex_credentials", "tenant_id", "client_id",
    "client_secret", *PRICE_FIELDS))
# router_settings / litellm_settings the import maps (fallbacks: aliases; routing_strategy: routing)
_HANDLED_SETTINGS = ("fallbacks", "context_window_fallbacks", "default_fallbacks", "routing_strategy", "master_key",
                     "model_group_alias")


# (LiteLLM prefix, shieldes kind, base URL, key, weight, kind options, own): entries sharing one become one
# provider; `own` is the upstream model of an entry with rpm/tpm limits, so that it stays a deployment of its own
Group = tuple[str, str, str, SecretSpec, float, tuple[tuple[str, str], ...], str]
_CLOUD = ("azure", "bedrock", "gemini", "vertex_ai")
# litellm_params LiteLLM's Bedrock calls get AWS credentials from: each node's botocore chain here
_AWS_CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_profile_name",
                    "aws_role_name", "aws_session_name", "aws_web_identity_token", "aws_sts_endpoint",
                    "aws_external_id")


def _add_entry(groups: dict[Group, list[str]], origins: dict[Group, str],
               publics: dict[str, list[tuple[Group, str, float]]], public_origin: dict[str, str],
               group: Group, public: str, upstream: str, weight: float, where: str) -> None:
    models = groups.setdefault(group, [])
    origins.setdefault(group, where)
    if upstream not in models:
        models.append(upstream)
    publics.setdefault(public, []).append((group, upstream, weight))
    public_origin.setdefault(public, where)


def wildcard(public: str, prefix: str, upstream: str, ref: str, where: str) -> bool:
    """A LiteLLM wildcard route as a shieldes pattern (the upstream part, which serves a name as the
    client sent it): True when clients name it `PREFIX/NAME` (model_name `anthropic/*`, model
    `anthropic/*`), False when they send the name itself (model_name `claude-*`, model
    `anthropic/claude-*`; `*` with `openai/*`). Forms shieldes cannot express are refused."""
    if "/" not in ref:
        raise ImportRejected(
            f"{where} is a wildcard route ({ref}) naming no provider (LiteLLM picks one per request from the "
            "name), which shieldes cannot express: write one entry per provider, e.g. model_name \"claude-*\" "
            "with model \"anthropic/claude-*\", or model_name \"*\" with model \"openai/*\"")
    if upstream.count("*") != 1 or not upstream.endswith("*"):
        raise ImportRejected(
            f"{where} is a wildcard route ({ref}) with a '*' that does not end the name: a shieldes pattern "
            "has one '*', at the end (claude-*, or * alone); rewrite it so, or leave it out and list the names")
    if public == upstream:
        return False
    if public == f"{prefix}/{upstream}":
        return True
    raise ImportRejected(
        f"{where} is a wildcard route from model_name {public!r} to {ref}, which renames what it matches; "
        "shieldes sends a name a pattern matches upstream as the client asked it, so give both the same "
        f"pattern (model_name {upstream!r} or {prefix + '/' + upstream!r} with model {ref!r}), or list the names "
        "and import again (each becomes a model alias)")


def _add_pattern(groups: dict[Group, list[str]], origins: dict[Group, str], pinnings: list[tuple[Group, str, str]],
                 group: Group, pattern: str, pinned: bool, where: str) -> None:
    """A wildcard entry: its pattern joins the provider's models; no alias (a pattern is no name)."""
    models = groups.setdefault(group, [])
    origins.setdefault(group, where)
    if pattern not in models:
        models.append(pattern)
    if pinned:
        pinnings.append((group, pattern, where))


def _check_pinning(group: Group, name: str, pattern: str, where: str, spec: ImportSpec) -> None:
    """`PREFIX/NAME` reaches the provider named PREFIX or those of kind PREFIX (docs/routing.md);
    a wildcard route clients name that way must land on one of them."""
    prefix, kind = group[0], group[1]
    if name != prefix and kind != prefix:
        raise ImportRejected(
            f"{where} is a wildcard route clients reach as {prefix}/NAME, but its provider is named {name!r} "
            f"(other {prefix} entries use another endpoint, key or weight and took the name {prefix!r}); "
            f"shieldes picks a provider by `{prefix}/` only when it is named so: give the {prefix} entries the same "
            f"api_base, api_key and weight, or use model_name {pattern!r} (clients then send NAME)")
    spec.notes.append(f"{where}: clients asking {prefix}/NAME reach provider {name!r} through its pattern "
                      f"{pattern!r} as in LiteLLM; a bare NAME it matches that no provider lists exactly reaches "
                      "it too (docs/routing.md#model-patterns)")


def limits(entry: dict[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    """A deployment's `rpm`/`tpm` (LiteLLM's router reads them from the entry, its litellm_params or its
    model_info) as the shieldes provider options of the same names: cluster-wide quotas of that deployment."""
    out = []
    for limit in ("rpm", "tpm"):
        for src, at in ((entry, where), (entry["litellm_params"], f"{where}.litellm_params"),
                        (entry.get("model_info"), f"{where}.model_info")):
            value = src.get(limit) if isinstance(src, dict) else None
            if value is None:
                continue
            if isinstance(value, str) and value.replace("_", "").isdigit():
                value = int(value.replace("_", ""))
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) \
                    or not 0 < value <= 10**12:
                raise ImportRejected(f"{at}.{limit} must be a whole number of requests (tokens) per minute above "
                                     f"0, got {value!r}; fix it or remove it")
            out.append((limit, str(int(value))))
            break
    return tuple(out)


def _overlaps(groups: dict[Group, list[str]], names: dict[Group, str], pinnings: list[tuple[Group, str, str]],
              spec: ImportSpec) -> None:
    """A route clients reach as PREFIX/NAME gives its provider a pattern, which serves bare names too:
    where the file also routes bare names by a pattern (`*` to openai/*), those names would be shared
    with the pinned providers, which LiteLLM never sends them to. Said, with what to do instead."""
    pinned = {(names[g], p) for g, p, _ in pinnings}
    bare = [(names[g], m) for g, models in groups.items() for m in models
            if m.endswith("*") and (names[g], m) not in pinned]
    for name, pattern in bare:
        shared = sorted({n for n, p in pinned if n != name and (p.startswith(pattern[:-1]) or
                                                                 pattern.startswith(p[:-1]))})
        if shared:
            spec.notes.append(
                f"bare names matching {pattern!r} (provider {name!r}) are shared with {', '.join(shared)}, whose "
                "PREFIX/* routes serve them through the same pattern; LiteLLM sends them to "
                f"{name!r} only. Narrow those providers to their own model families (`shieldes provider update "
                f"{shared[0]} --models 'FAMILY-*'`, e.g. claude-* for Anthropic) or list the names; "
                "docs/routing.md#model-patterns")


def _text(params: dict[str, Any], key: str, where: str, *spellings: str) -> str | None:
    """A setting shieldes stores as written, under its name or the other `spellings` LiteLLM reads
    (vertex_ai_project for vertex_project): a reference to LiteLLM's environment cannot be stored."""
    for name in (key, *spellings):
        value = params.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or value.startswith("os.environ/"):
            raise ImportRejected(
                f"{where}.litellm_params.{name} is {value!r}; write the value itself in the file (shieldes stores "
                "provider settings, not references to LiteLLM's environment), and import again")
        return value.strip()
    return None


def _defaulted(value: str | None, default: str, what: str, where: str, spec: ImportSpec) -> str:
    """`value`, else `default` with a note: LiteLLM would have read its own environment for it."""
    if value is not None:
        return value
    spec.notes.append(f"{where} gives no {what}: {default!r} is used (LiteLLM reads it from its environment "
                      f"then); set it with `shieldes provider update NAME` if it differs")
    return default


def _cloud(prefix: str, upstream: str, params: dict[str, Any], where: str,
           spec: ImportSpec) -> tuple[str, str, tuple[tuple[str, str], ...], str]:
    """(kind, base URL, options, upstream model) of an azure/, bedrock/, gemini/ or vertex_ai/ entry."""
    kind = "vertex" if prefix == "vertex_ai" else prefix
    options: dict[str, str] = {}
    if kind == "azure":
        base = _text(params, "api_base", where)
        if base is None:
            raise ImportRejected(f"{where} is an Azure deployment without litellm_params.api_base; add "
                                 "https://RESOURCE.openai.azure.com")
        options["api_version"] = _defaulted(_text(params, "api_version", where), "2024-10-21",
                                            "api_version (AZURE_API_VERSION)", where, spec)
        if params.get("tenant_id") or params.get("client_id"):
            options["auth"] = "entra"
            spec.notes.append(f"{where}: Entra ID credentials are not imported; each node gets tokens from "
                              "azure-identity's default chain (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
                              "managed identity)")
        return kind, base.rstrip("/"), tuple(sorted(options.items())), upstream
    if kind == "bedrock":
        for route in ("converse/", "invoke/"):
            upstream = upstream.removeprefix(route)
        options["region"] = _defaulted(_text(params, "aws_region_name", where), "us-east-1",
                                       "aws_region_name (AWS_REGION_NAME, AWS_REGION)", where, spec)
        given = [k for k in _AWS_CREDENTIALS if params.get(k)]
        if given:
            note = (f"{where}: AWS credentials ({', '.join(given)}) are not imported; each node uses botocore's "
                    "standard chain (environment, profile, role)")
            if "aws_role_name" in given:
                note += (f": to assume {params['aws_role_name']!r} as LiteLLM did, give the nodes a profile with that "
                         "role_arn (AWS_PROFILE) or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE")
            spec.notes.append(note)
        # LiteLLM calls a Bedrock deployment at aws_bedrock_runtime_endpoint (a VPC endpoint, a proxy) when given
        endpoint = _text(params, "aws_bedrock_runtime_endpoint", where)
        if endpoint is not None and _text(params, "api_base", where) is None:
            ordered = tuple(sorted(options.items()))
            return kind, endpoint.rstrip("/"), ordered, upstream
    elif kind == "vertex":
        project = _text(params, "vertex_project", where, "vertex_ai_project")
        location = _text(params, "vertex_location", where, "vertex_ai_location")
        if project is None:
            raise ImportRejected(f"{where} is a Vertex AI model without litellm_params.vertex_project (LiteLLM "
                                 "then reads VERTEXAI_PROJECT); add the Google Cloud project id")
        options.update(project=project, location=_defaulted(location, "us-central1",
                                                            "vertex_location (VERTEXAI_LOCATION)", where, spec))
        creds = params.get("vertex_credentials")
        if isinstance(creds, str) and creds and not creds.startswith(("os.environ/", "{")):
            options["credentials_file"] = creds
        elif creds:
            spec.notes.append(f"{where}: vertex_credentials not imported (only a file path can be); the node's "
                              "Application Default Credentials are used unless you set --credentials-file")
    base = _text(params, "api_base", where)
    ordered = tuple(sorted(options.items()))
    return kind, (base or base_url_for(KINDS[kind], None, options)).rstrip("/"), ordered, upstream


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
        prefix, upstream = _split_model(model_ref.strip(), params.get("custom_llm_provider"), where)
        public = str(entry.get("model_name") or upstream)
        pinned = wildcard(public, prefix, upstream, model_ref.strip(), where) if "*" in public + model_ref else None
        options: tuple[tuple[str, str], ...] = ()
        quota = limits(entry, where)
        # a deployment with its own quota is a provider of its own; entries naming the same deployment (one
        # model of one endpoint and key, under several model_names) are that one deployment, with one quota
        own = upstream if quota else ""
        if prefix in _CLOUD:
            cloud_kind, base_url, options, upstream = _cloud(prefix, upstream, params, where, spec)
            entra = dict(options).get("auth") == "entra" and not params.get("api_key")  # tokens, not a key
            # a bedrock entry's api_key is a Bedrock API key (sent as a bearer token instead of signing)
            secret = _secret(params.get("api_key"), prefix, base_url, where, spec) if cloud_kind in (
                "azure", "gemini", "bedrock") and not entra else SecretSpec()
            weight = check_weight(params.get("weight", 1), f"{where}.litellm_params.weight")
            group = (prefix, cloud_kind, base_url, secret, weight, tuple(sorted(options + quota)), own)
            if pinned is None:
                _add_entry(groups, origins, publics, public_origin, group, public, upstream, weight, where)
            else:
                _add_pattern(groups, origins, pinnings, group, upstream, pinned, where)
            _keep_price(spec, _price(upstream, params, entry.get("model_info"), where, spec), where)
            continue
        if prefix == "azure_ai" and (unsupported := _azure_ai(params, where)):
            spec.skipped.append(f"{where} ({model_ref}): {unsupported}")
            continue
        kind, default_base = _kind_of(prefix)
        if kind is None:
            spec.skipped.append(f"{where} ({model_ref}): LiteLLM provider {prefix!r} is not supported "
                                "by shieldes (supported: openai, anthropic, azure, bedrock, gemini, vertex_ai "
                                "and OpenAI-compatible APIs)")
            continue
        base_url = _base_url(kind, params.get("api_base"), default_base, where, native=prefix in _OLLAMA)
        # an Azure AI endpoint is the file's, but its key LiteLLM reads from AZURE_AI_API_KEY when none is given
        secret = _secret(params.get("api_key"), prefix, base_url if prefix == "azure_ai" else default_base, where, spec)
        weight = check_weight(params.get("weight", 1), f"{where}.litellm_params.weight")
        group = (prefix, kind, base_url, secret, weight, tuple(sorted(options + quota)), own)
        if pinned is None:
            _add_entry(groups, origins, publics, public_origin, group, public, upstream, weight, where)
        else:
            _add_pattern(groups, origins, pinnings, group, upstream, pinned, where)
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
        _check_pinning(group, names[group], pattern, where, spec)
    _overlaps(groups, names, pinnings, spec)
    fallbacks = _fallbacks(doc)
    # default_fallbacks: LiteLLM's fallbacks for every model group that has none of its own
    for public in publics if (default := _default_fallbacks(doc)) else ():
        chain = [n for n in default if n != public]
        if public not in fallbacks and chain:
            fallbacks[public] = chain
    named = {public: [(names[g], upstream, w) for g, upstream, w in entries] for public, entries in publics.items()}
    spec.aliases.extend(model_groups(named, public_origin, fallbacks))
    spec.aliases.extend(_group_aliases(doc, named, fallbacks, spec))
    for public in fallbacks:
        if public not in publics:
            spec.notes.append(f"fallbacks for {public!r} ignored: no model_list entry has that model_name")
    _settings(doc, named, spec, found)
    _access_groups(doc["model_list"], spec)
    return spec


def _access_groups(entries: list[Any], spec: ImportSpec) -> None:
    """model_info.access_groups: LiteLLM keys list a group's name among their models to reach its
    model_names; shieldes keys list the model names, so each group is said with the names it stands for."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        info = entry.get("model_info") if isinstance(entry, dict) else None
        found = info.get("access_groups") if isinstance(info, dict) else None
        if not isinstance(found, list):
            continue
        public = str(entry.get("model_name") or entry["litellm_params"].get("model"))
        for group in found:
            names = groups.setdefault(str(group), [])
            if public not in names:
                names.append(public)
    for group, names in groups.items():
        spec.notes.append(f"model_info.access_groups {group!r} not imported: a shieldes key lists model names, so give "
                          f"keys that name {group!r} in their models these instead: --models {','.join(names)}")


def _group_aliases(doc: dict[str, Any], named: dict[str, list[tuple[str, str, float]]],
                   fallbacks: dict[str, list[str]], spec: ImportSpec) -> list[AliasSpec]:
    """router_settings.model_group_alias {name: model_name, or {model: model_name, hidden}}: a name
    clients use for a model group, an alias with the group's targets and fallbacks."""
    router = doc.get("router_settings")
    groups = router.get("model_group_alias") if isinstance(router, dict) else None
    if groups is None:
        return []
    if not isinstance(groups, dict):
        raise ImportRejected("router_settings.model_group_alias must map a name to a model_name, like "
                             "{\"gpt-4\": \"gpt-4o\"}")
    out = []
    for alias, target in groups.items():
        where = f"router_settings.model_group_alias[{alias!r}]"
        group = target.get("model") if isinstance(target, dict) else target
        if not isinstance(group, str) or group not in named:
            raise ImportRejected(f"{where} names {group!r}, which no model_list entry has as model_name; "
                                 "name one of the file's model_names, or remove it")
        if str(alias) in named:
            raise ImportRejected(f"{where}: {alias!r} is also a model_name of model_list; LiteLLM serves the "
                                 "model_list entry, so remove the alias or rename one")
        if isinstance(target, dict) and target.get("hidden"):
            spec.notes.append(f"{where}.hidden not imported: GET /v1/models lists the alias {alias!r}")
        out.append(AliasSpec(str(alias), tuple(dict.fromkeys(named[group])), tuple(fallbacks.get(group, ())),
                             where))
    return out


def _settings(doc: dict[str, Any], named: dict[str, list[tuple[str, str, float]]], spec: ImportSpec,
              found: Found) -> None:
    """The file's settings: routing_strategy as the strategy of each model group, the rest named in notes."""
    router = doc.get("router_settings")
    if isinstance(router, dict) and router.get("routing_strategy") is not None:
        strategy, note = litellm_strategy(router["routing_strategy"])
        if note:
            spec.notes.append(note)
        # a strategy orders a name's deployments: it matters where several serve one name
        spec.routing.extend((public, strategy) for public, entries in named.items()
                            if strategy and len(entries) > 1)
    for section in ("router_settings", "litellm_settings", "general_settings"):
        settings = doc.get(section)
        if isinstance(settings, dict):
            spec.notes.extend(settings_notes(section, settings, found, _HANDLED_SETTINGS))
    spec.notes.extend(node_notes(found))
    general = doc.get("general_settings")
    if isinstance(general, dict) and general.get("master_key"):
        spec.notes.append("general_settings.master_key: clients use shieldes virtual keys (`shieldes key create`); "
                          "the admin API takes SHIELDES_ADMIN_TOKEN or admin tokens (docs/admin-api.md)")
    env = doc.get("environment_variables")
    if isinstance(env, dict) and env:
        spec.notes.append(f"environment_variables {', '.join(sorted(map(str, env)))} not imported: set the ones "
                          "the providers read (api keys) in every node's environment")
    other = sorted(set(doc) - {"model_list", "router_settings", "litellm_settings", "general_settings",
                               "environment_variables"})
    if other:
        spec.notes.append(f"{', '.join(map(str, other))} not imported: shieldes has no such section")


def _fallbacks(doc: dict[str, Any]) -> dict[str, list[str]]:
    """model_name -> fallback model_names in order, from `fallbacks` then `context_window_fallbacks`
    (shieldes falls back on both exhaustion and too-long prompts, so the two lists are merged)."""
    out: dict[str, list[str]] = {}
    for section in ("router_settings", "litellm_settings"):
        settings = doc.get(section)
        if not isinstance(settings, dict):
            continue
        for key in ("fallbacks", "context_window_fallbacks"):
            rules = settings.get(key) or []
            if not isinstance(rules, list):
                raise ImportRejected(f"{section}.{key} must be a list like [{{\"gpt-4o\": [\"claude\"]}}]")
            for rule in rules:
                if not isinstance(rule, dict):
                    raise ImportRejected(f"{section}.{key} entries must map a model_name to a list of names")
                for public, names in rule.items():
                    names = [names] if isinstance(names, str) else names
                    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                        raise ImportRejected(f"{section}.{key}[{public!r}] must be a list of model_names")
                    chain = out.setdefault(str(public), [])
                    chain.extend(n for n in names if n not in chain and n != public)
    return out


def _default_fallbacks(doc: dict[str, Any]) -> list[str]:
    """`default_fallbacks` (litellm_settings or router_settings): model_names, in order."""
    for section in ("router_settings", "litellm_settings"):
        settings = doc.get(section)
        names = settings.get("default_fallbacks") if isinstance(settings, dict) else None
        if names is None:
            continue
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ImportRejected(f"{section}.default_fallbacks must be a list of model_names, like [\"claude-haiku\"]")
        return list(dict.fromkeys(names))
    return []


def _split_model(ref: str, provider: Any = None, where: str = "") -> tuple[str, str]:
    """(LiteLLM provider prefix, upstream model) of litellm_params.model. `provider`: the entry's
    custom_llm_provider, which LiteLLM takes over the model's prefix: the model is then sent as
    written, less that provider's own prefix (`anthropic.claude-...` with `bedrock` is a Bedrock id)."""
    if provider is not None:
        if not isinstance(provider, str) or not provider.strip():
            raise ImportRejected(f"{where}.litellm_params.custom_llm_provider must be a provider name like bedrock, "
                                 f"got {provider!r}")
        name = provider.strip().lower()
        return name, ref[len(name) + 1:] if ref.lower().startswith(name + "/") else ref
    prefix, sep, rest = ref.partition("/")
    if sep and rest:
        return prefix.lower(), rest
    # No prefix: LiteLLM infers the provider from the model name.
    return ("anthropic" if ref.startswith("claude") else "openai"), ref


def _azure_ai(params: dict[str, Any], where: str) -> str | None:
    """Why an `azure_ai/` entry cannot be imported, or None. LiteLLM calls a serverless endpoint
    (https://NAME.REGION.models.ai.azure.com) as an OpenAI-compatible API at api_base with a bearer
    key, which is what shieldes' openai type does; a Foundry resource (*.services.ai.azure.com,
    *.openai.azure.com) it calls with an `api-key` header and an api-version query, which it does not."""
    base = params.get("api_base")
    if not isinstance(base, str) or not base.strip():
        raise ImportRejected(f"{where} is an Azure AI model without litellm_params.api_base; add its endpoint "
                             "(https://NAME.REGION.models.ai.azure.com)")
    host = urlsplit(base.strip()).hostname or ""
    if host.endswith((".services.ai.azure.com", ".openai.azure.com")):
        return ("an Azure AI Foundry resource endpoint, which LiteLLM calls with an api-key header at "
                "/models/chat/completions?api-version=..., is not supported by shieldes: for an Azure OpenAI "
                "model use an azure/DEPLOYMENT entry (api_base https://RESOURCE.openai.azure.com), for another "
                "model its serverless endpoint (https://NAME.REGION.models.ai.azure.com)")
    return None


def _kind_of(prefix: str) -> tuple[str | None, str | None]:
    if prefix == "anthropic":
        return "anthropic", DEFAULT_BASE_URLS["anthropic"]
    if prefix in _OLLAMA or prefix == "azure_ai":  # Ollama: LiteLLM speaks its own API, shieldes its OpenAI one
        return "openai", None
    if prefix in OPENAI_COMPATIBLE:
        return "openai", OPENAI_COMPATIBLE[prefix]
    if prefix == "text-completion-openai":
        return "openai", DEFAULT_BASE_URLS["openai"]
    return None, None


def _base_url(kind: str, given: Any, default: str | None, where: str, *, native: bool = False) -> str:
    if isinstance(given, str) and given.strip():
        if given.startswith("os.environ/"):
            raise ImportRejected(f"{where}.litellm_params.api_base reads {given}; write the URL in the file")
        # LiteLLM hands api_base to the openai SDK as its base_url, so it is used as written; but for
        # Ollama it is the server's root (LiteLLM calls its own API, /api/chat), whose OpenAI API is /v1.
        url = given.strip().rstrip("/")
        if native:
            return normalize_openai_base(url)
        return normalize_anthropic_base(url) if kind == "anthropic" else url
    if default is None:
        raise ImportRejected(f"{where} is a self-hosted model without litellm_params.api_base; "
                             "add the server's URL")
    return default


def _secret(value: Any, prefix: str, default_base: str | None, where: str, spec: ImportSpec) -> SecretSpec:
    if value is None or value == "":
        var = _DEFAULT_KEY_ENV.get(prefix)
        if var is None or default_base is None:
            return SecretSpec()
        note = f"{where} has no api_key; using env:{var} as LiteLLM does"
        if note not in spec.notes:
            spec.notes.append(note)
        return SecretSpec(env_var=var)
    if not isinstance(value, str):
        raise ImportRejected(f"{where}.litellm_params.api_key must be a string like os.environ/VAR")
    if value.startswith("os.environ/"):
        return SecretSpec(env_var=value.removeprefix("os.environ/"))
    return SecretSpec(plaintext=value)



def _keep_price(spec: ImportSpec, price: PriceSpec | None, where: str) -> None:
    """`price` for the import. LiteLLM prices each deployment, shieldes each upstream model (every
    deployment serving it alike): where two entries price one model differently, the later one is
    kept and a note says so (it was kept without a word)."""
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
                     entry.per_image, entry.long_context, entry.per_web_search, entry.multipliers, entry.per_use)


def base_price(base: str) -> tuple[str, CatalogEntry] | None:
    """The catalog's price for a LiteLLM base_model (`azure/gpt-4o-2024-08-06`, `gpt-35-turbo`): the
    name without its provider prefix, Azure's `gpt-35` spelled as OpenAI's `gpt-3.5`."""
    name = base.rpartition("/")[2]
    for candidate in (base, name, name.replace("gpt-35", "gpt-3.5")):
        entry = shipped().get(candidate)
        if entry is not None:
            return candidate, entry
    return None
