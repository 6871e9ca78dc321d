"""Bifrost config.json -> ImportSpec (pure).

Bifrost keeps providers in a `providers` map keyed by provider name; each has `keys`
[{name, value, models, weight}] and an optional `network_config.base_url`. A key value is either
`env.VAR` (a reference) or the key itself. Custom providers carry
`custom_provider_config.base_provider_type`. Each Bifrost key becomes one shieldes provider, because
a shieldes provider holds exactly one upstream key.
"""

from __future__ import annotations

from typing import Any

from shieldes.importers.spec import (
    DEFAULT_BASE_URLS,
    OPENAI_COMPATIBLE,
    ImportRejected,
    ImportSpec,
    ProviderSpec,
    SecretSpec,
    check_weight,
    normalize_anthropic_base,
    normalize_openai_base,
    safe_name,
)


def parse_bifrost(doc: Any) -> ImportSpec:
    if not isinstance(doc, dict) or not isinstance(doc.get("providers"), dict):
        raise ImportRejected('not a Bifrost config.json: expected an object with a "providers" map')
    spec = ImportSpec()
    for pname, pconf in doc["providers"].items():
        if not isinstance(pconf, dict):
            raise ImportRejected(f"providers.{pname} must be an object with a \"keys\" list")
        kind, default_base = _kind_of(pname, pconf)
        if kind is None:
            spec.skipped.append(f"providers.{pname}: Bifrost provider type not supported by shieldes "
                                "(supported: openai, anthropic and OpenAI-compatible APIs)")
            continue
        network = pconf.get("network_config") or {}
        base = network.get("base_url") if isinstance(network, dict) else None
        base_url = _base_url(kind, pname, base, default_base)
        keys = pconf.get("keys") or []
        if not isinstance(keys, list) or not keys:
            spec.notes.append(f"providers.{pname} has no keys; nothing to import for it")
            continue
        for i, key in enumerate(keys):
            where = f"providers.{pname}.keys[{i}]"
            if not isinstance(key, dict):
                raise ImportRejected(f"{where} must be an object with value, models and weight")
            name = pname if len(keys) == 1 else _key_provider_name(pname, key.get("name"), i)
            spec.providers.append(
                ProviderSpec(
                    name=safe_name(name),
                    kind=kind,
                    base_url=base_url,
                    secret=_secret(key.get("value"), where),
                    models=_models(key.get("models"), where),
                    weight=check_weight(key.get("weight", 1.0), f"{where}.weight"),
                    origin=where,
                )
            )
            if key.get("aliases"):
                spec.notes.append(f"{where}.aliases ignored: shieldes serves models under upstream names")
    for section in ("governance", "plugins", "mcp"):
        if doc.get(section):
            spec.notes.append(f"{section!r} section not imported: create virtual keys and budgets with "
                              "`shieldes key create` and `shieldes budget set`")
    return spec


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


def _models(models: Any, where: str) -> tuple[str, ...]:
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise ImportRejected(f"{where}.models must be a list of model names")
    if not models or "*" in models:  # Bifrost reads a missing or empty list as "every model" too
        raise ImportRejected(
            f"{where} serves every model (\"*\"); shieldes routes by explicit model names: "
            "list the models this key should serve in the file and import again"
        )
    return tuple(dict.fromkeys(models))

