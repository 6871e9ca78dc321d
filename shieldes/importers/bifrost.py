"""Bifrost config.json -> ImportSpec (pure).

Bifrost keeps providers in a `providers` map keyed by provider name; each has `keys`
[{name, value, models, weight, aliases}] and an optional `network_config.base_url`. A key value is
either `env.VAR` (a reference) or the key itself. Custom providers carry
`custom_provider_config.base_provider_type`. Each Bifrost key becomes one shieldes provider, because
a shieldes provider holds exactly one upstream key.

Cloud kinds carry their settings per key (older files: per provider, `meta_config`):
`azure_key_config` {endpoint, api_version, deployments, client_id...}, `bedrock_key_config`
{region, access_key, secret_key, arn, deployments}, `vertex_key_config` {project_id, region,
auth_credentials}; `gemini` is a plain keyed provider. A key's `models` are the names clients use
(`"*"` alone, or no list, is every model: the pattern `*` here); its `aliases` (or the older
`deployments`) map one to the upstream model or deployment serving it.
A name served under another upstream name, or by several keys where one renames it, becomes a
shieldes model alias whose weighted targets are every key serving it (a model group).
"""

from __future__ import annotations

from typing import Any

from shieldes.importers.bifrost_governance import parse_governance
from shieldes.importers.settings_notes import NO_SETTING, Found, node_notes, settings_notes
from shieldes.importers.spec import (
    DEFAULT_BASE_URLS,
    OPENAI_COMPATIBLE,
    ImportRejected,
    ImportSpec,
    McpServerSpec,
    ProviderSpec,
    SecretSpec,
    check_weight,
    entra_auth,
    model_groups,
    normalize_anthropic_base,
    normalize_openai_base,
    safe_name,
)
from shieldes.providers.kinds import KINDS, base_url_for

_CLOUD = ("azure", "bedrock", "vertex", "gemini")
Options = tuple[tuple[str, str], ...]


def parse_bifrost(doc: Any) -> ImportSpec:
    if not isinstance(doc, dict) or not isinstance(doc.get("providers"), dict):
        raise ImportRejected('not a Bifrost config.json: expected an object with a "providers" map')
    spec = ImportSpec()
    publics: dict[str, list[tuple[str, str, float]]] = {}  # name clients use -> (provider, upstream, weight)
    origins: dict[str, str] = {}
    found: Found = []  # timeout and retry settings: node settings in shieldes
    for pname, pconf in doc["providers"].items():
        if not isinstance(pconf, dict):
            raise ImportRejected(f"providers.{pname} must be an object with a \"keys\" list")
        kind, default_base = _kind_of(pname, pconf)
        if kind is None:
            spec.skipped.append(f"providers.{pname}: Bifrost provider type not supported by shieldes "
                                "(supported: openai, anthropic, azure, bedrock, vertex, gemini and "
                                "OpenAI-compatible APIs)")
            continue
        network = pconf.get("network_config") or {}
        base = network.get("base_url") if isinstance(network, dict) else None
        _provider_notes(f"providers.{pname}", pconf, network, spec, found)
        keys = pconf.get("keys") or []
        if not isinstance(keys, list) or not keys:
            spec.notes.append(f"providers.{pname} has no keys; nothing to import for it")
            continue
        for i, key in enumerate(keys):
            where = f"providers.{pname}.keys[{i}]"
            if not isinstance(key, dict):
                raise ImportRejected(f"{where} must be an object with value, models and weight")
            name = safe_name(pname if len(keys) == 1 else _key_provider_name(pname, key.get("name"), i))
            if key.get("blacklisted_models"):
                spec.notes.append(
                    f"{where}.blacklisted_models not imported: provider {name!r} serves what its models say "
                    f"(a pattern serves every name it matches); list the models it may serve instead "
                    f"(`shieldes provider update {name} --models ...`), or limit virtual keys with `key --models`")
            settings = key.get(f"{kind}_key_config") or pconf.get("meta_config") or {}
            if not isinstance(settings, dict):
                raise ImportRejected(f"{where}.{kind}_key_config must be an object")
            models, every = _model_map(key, settings, kind, where, spec)
            if kind in _CLOUD:
                base_url, options = _cloud(kind, base, settings, where, spec)
            else:
                base_url, options = _base_url(kind, pname, base, default_base), ()
            weight = check_weight(key.get("weight", 1.0), f"{where}.weight")
            secret = _secret(key.get("value"), where) if kind != "vertex" else SecretSpec()
            served = tuple(dict.fromkeys(models.values())) + (("*",) if every else ())
            spec.providers.append(ProviderSpec(name, kind, base_url, secret, served, weight, where, options))
            if every:
                spec.notes.append(
                    f"{where} serves every model (\"*\"): provider {name!r} gets the pattern '*', so clients asking "
                    f"{pname}/NAME reach it as in Bifrost; a bare NAME no provider lists exactly reaches it too, "
                    "shared with any other '*' provider (narrow it with `shieldes provider update "
                    f"{name} --models 'claude-*'`, docs/routing.md#model-patterns)")
            for public, upstream in models.items():
                publics.setdefault(public, []).append((name, upstream, weight))
                origins.setdefault(public, where)
    spec.aliases.extend(model_groups(publics, origins))
    spec.notes.extend(node_notes(found))
    _section_notes(doc, spec)
    return spec


# Bifrost sections other than providers, and what to do in shieldes instead
_SECTIONS = {
    "governance": "create virtual keys, teams and budgets with `shieldes key create --models --rpm --tpm --budget`, "
                  "`shieldes team create --budget` (docs/cli.md)",
    "mcp": "register each MCP server with `shieldes mcp add NAME URL --header ...` and give keys access with "
           "`shieldes key update KEY --mcp NAME` (docs/mcp.md)",
    "plugins": "shieldes has no plugins: budgets and limits are built in (`shieldes key create`), request logs and "
               "metrics too (docs/observability.md)",
}


def _mcp(doc: dict[str, Any], spec: ImportSpec) -> None:
    """`mcp.client_configs`: each Streamable HTTP server (connection_type http) becomes a shieldes MCP
    server (`shieldes mcp add`); header values `env.VAR` stay references. Others are named in notes."""
    mcp = doc.get("mcp")
    configs = mcp.get("client_configs") if isinstance(mcp, dict) else None
    if mcp and not isinstance(configs, list):
        spec.notes.append(f"'mcp' section not imported: {_SECTIONS['mcp']}")
        return
    for i, client in enumerate(configs or []):
        where = f"mcp.client_configs[{i}]"
        if not isinstance(client, dict) or not isinstance(client.get("name"), str):
            raise ImportRejected(f"{where} must be an object with a name, connection_type and connection_string")
        name, kind, url = client["name"], client.get("connection_type"), client.get("connection_string")
        if kind != "http" or not isinstance(url, str) or not url:
            spec.notes.append(f"{where} ({name!r}, connection_type {kind}) not imported: shieldes relays MCP "
                              "servers over Streamable HTTP; run it behind an HTTP MCP endpoint and `shieldes mcp add "
                              f"{safe_name(name)} URL`")
            continue
        headers = client.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ImportRejected(f"{where}.headers must map header names to values (\"env.VAR\" or the value)")
        secrets = tuple((h, _secret(v, f"{where}.headers.{h}")) for h, v in headers.items())
        spec.mcp_servers.append(McpServerSpec(safe_name(name), url.strip(), secrets, where))
        tools = client.get("tools_to_execute")
        if isinstance(tools, list) and tools != ["*"]:
            spec.notes.append(f"{where}.tools_to_execute not imported: shieldes limits tools per key; give keys "
                              f"`--mcp {safe_name(name)}/TOOL,...` (`shieldes key update`)")
        other = sorted(set(client) - {"name", "connection_type", "connection_string", "headers", "tools_to_execute",
                                      "id", "client_id"})
        if other:
            spec.notes.append(f"{where} {', '.join(other)} not imported: {NO_SETTING}")


def _section_notes(doc: dict[str, Any], spec: ImportSpec) -> None:
    _mcp(doc, spec)
    gov = doc.get("governance")
    if isinstance(gov, dict):
        parse_governance(gov, spec)
        other = sorted(set(gov) - {"budgets", "rate_limits", "teams", "customers", "virtual_keys"})
        if other:
            spec.notes.append(f"governance {', '.join(other)} not imported: {NO_SETTING}")
    for section, instead in _SECTIONS.items():
        if doc.get(section) and section not in ("mcp", "governance"):
            spec.notes.append(f"{section!r} section not imported: {instead}")
    other = sorted(k for k in doc if k not in _SECTIONS and k not in ("providers", "$schema") and doc[k])
    if other:
        spec.notes.append(f"{', '.join(map(repr, other))} not imported: {NO_SETTING}")


def _provider_notes(where: str, pconf: dict[str, Any], network: Any, spec: ImportSpec, found: Found) -> None:
    """A provider's settings besides keys, base_url and type: timeouts and retries as the node
    settings that say them, the rest named."""
    if isinstance(network, dict):
        net = {k: v for k, v in network.items() if k != "extra_headers"}
        spec.notes.extend(settings_notes(f"{where}.network_config", net, found, ("base_url",)))
        if network.get("extra_headers"):
            spec.notes.append(f"{where}.network_config.extra_headers not imported: shieldes sends no extra headers "
                              "to a provider; put a proxy that adds them in front of the upstream, or drop them")
    if pconf.get("proxy_config"):
        spec.notes.append(f"{where}.proxy_config not imported: shieldes nodes reach upstreams through HTTPS_PROXY / "
                          "HTTP_PROXY / NO_PROXY (docs/configuration.md#egress-proxy-and-trust-store)")
    custom = pconf.get("custom_provider_config")
    if isinstance(custom, dict):
        other = sorted(set(custom) - {"base_provider_type"})
        if other:
            spec.notes.append(f"{where}.custom_provider_config {', '.join(other)} not imported: a shieldes provider "
                              "serves every request type its kind has")
    other = sorted(set(pconf) - {"keys", "network_config", "proxy_config", "custom_provider_config", "meta_config"})
    if other:
        spec.notes.append(f"{where} {', '.join(other)} not imported: {NO_SETTING}")


def _key_provider_name(pname: str, key_name: object, index: int) -> str:
    """One shieldes provider per Bifrost key: `<provider>-<key name>` (or `-<n>` for unnamed keys)."""
    if not isinstance(key_name, str) or not key_name:
        return f"{pname}-{index + 1}"
    return key_name if key_name.startswith(pname) else f"{pname}-{key_name}"


def _kind_of(pname: str, pconf: dict[str, Any]) -> tuple[str | None, str | None]:
    custom = pconf.get("custom_provider_config")
    base_type = custom.get("base_provider_type") if isinstance(custom, dict) else None
    ptype = str(base_type or pname).lower()
    if ptype == "anthropic":
        return "anthropic", DEFAULT_BASE_URLS["anthropic"]
    if ptype in _CLOUD:
        return ptype, None
    if ptype in OPENAI_COMPATIBLE:
        return "openai", OPENAI_COMPATIBLE[ptype]
    return None, None


def _base_url(kind: str, pname: str, given: Any, default: str | None) -> str:
    if isinstance(given, str) and given.strip():
        url = given.strip()
        return normalize_anthropic_base(url) if kind == "anthropic" else normalize_openai_base(url)
    if default is None:
        raise ImportRejected(
            f"providers.{pname} is self-hosted but has no network_config.base_url; add the server's URL"
        )
    return default


def _setting(settings: dict[str, Any], field: str, where: str) -> str | None:
    """A cloud setting shieldes stores as written (an endpoint, region, project): an environment
    reference cannot be kept, so it is refused with what to write instead."""
    value = settings.get(field)
    if isinstance(value, dict):  # the HTTP API's {"value", "env_var", "from_env"}
        value = ("env." + str(value.get("env_var"))) if value.get("from_env") else value.get("value")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value.startswith("env."):
        raise ImportRejected(f"{where}.{field} is {value!r}; write the value itself in the file (shieldes "
                             "stores provider settings, not references to Bifrost's environment)")
    return value.strip()


def _cloud(kind: str, base: Any, settings: dict[str, Any], where: str, spec: ImportSpec) -> tuple[str, Options]:
    """(base URL, kind options) of an azure, bedrock, vertex or gemini key."""
    options: dict[str, str] = {}
    at = f"{where}.{kind}_key_config"
    if kind == "azure":
        endpoint = _setting(settings, "endpoint", at)
        if endpoint is None:
            raise ImportRejected(f"{at}.endpoint is missing; add https://RESOURCE.openai.azure.com")
        options["api_version"] = _setting(settings, "api_version", at) or "2024-10-21"
        if settings.get("client_id") or settings.get("tenant_id"):
            entra_auth(options, spec, at)
        base = base or endpoint
    elif kind == "bedrock":
        options["region"] = _setting(settings, "region", at) or "us-east-1"
        if any(settings.get(k) for k in ("access_key", "secret_key", "session_token", "secret_access_key")):
            spec.notes.append(f"{at}: AWS credentials are not imported; each node uses botocore's standard chain "
                              "(environment, profile, role)")
        if settings.get("arn"):
            spec.notes.append(f"{at}.arn not imported: give inference-profile ARNs or ids as model names")
    elif kind == "vertex":
        project = _setting(settings, "project_id", at)
        if project is None:
            raise ImportRejected(f"{at}.project_id is missing; add the Google Cloud project id")
        options.update(project=project, location=_setting(settings, "region", at) or "us-central1")
        if settings.get("auth_credentials"):
            spec.notes.append(f"{at}.auth_credentials not imported: the node's Application Default Credentials "
                              "are used unless you set `shieldes provider update NAME --credentials-file F`")
    url = base.strip() if isinstance(base, str) and base.strip() else base_url_for(KINDS[kind], None, options)
    return url.rstrip("/"), tuple(sorted(options.items()))


def _model_map(key: dict[str, Any], settings: dict[str, Any], kind: str, where: str,
               spec: ImportSpec) -> tuple[dict[str, str], bool]:
    """The names clients use -> the upstream model (or Azure deployment) serving each, in file order,
    and whether the key serves every model (`"*"`, or no list: Bifrost reads both so)."""
    renames: dict[str, str] = {}
    for field, mapping in (("aliases", key.get("aliases")), (f"{kind}_key_config.deployments",
                                                             settings.get("deployments"))):
        if mapping is None or mapping == {}:
            continue
        if kind == "vertex" and field != "aliases":
            spec.notes.append(f"{where}.{field} not imported: Vertex custom endpoints are not served by shieldes")
            continue
        if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                    for k, v in mapping.items()):
            raise ImportRejected(f"{where}.{field} must map model names to upstream model names")
        renames.update({k: v.strip() for k, v in mapping.items()})
    models = key.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise ImportRejected(f"{where}.models must be a list of model names")
    for m in models or []:
        if "*" in m and m != "*":
            raise ImportRejected(
                f"{where}.models holds {m!r}: Bifrost matches a key's models exactly (\"*\" alone is every model), "
                "so it is no pattern there, and shieldes would read it as one; write the names or \"*\" and "
                f"import again, then narrow the provider with `shieldes provider update NAME --models '{m}'` "
                "if that is what you meant (a pattern has one '*', at the end)")
    every = not models or "*" in models
    names = [m for m in models or [] if m != "*"] + ([r for r in renames if r not in (models or [])] if every else [])
    return {m: renames.get(m, m) for m in dict.fromkeys(names)}, every


def _secret(value: Any, where: str) -> SecretSpec:
    # The Bifrost HTTP API spells a key as {"value", "env_var", "from_env"}; config.json as a string.
    if isinstance(value, dict):
        if value.get("from_env") and value.get("env_var"):
            value = "env." + str(value["env_var"]).removeprefix("env.")
        else:
            value = value.get("value")
    if value is None or value == "":
        return SecretSpec()
    if not isinstance(value, str):
        raise ImportRejected(f"{where}.value must be a string like \"env.OPENAI_API_KEY\"")
    if value.startswith("env."):
        return SecretSpec(env_var=value[4:])
    return SecretSpec(plaintext=value)
