"""LiteLLM proxy config.yaml -> ImportSpec (pure).

LiteLLM lists deployments in `model_list`: each entry has a public `model_name` and
`litellm_params` {model: "<provider>/<upstream model>", api_base, api_key, weight, ...}; keys are
`os.environ/VAR` references or literal values. Entries that share provider, endpoint, key and
weight become one shieldes provider serving several models. Prices come from
`input_cost_per_token` / `output_cost_per_token` (in litellm_params or model_info).
"""

from __future__ import annotations

from typing import Any

from shieldes.importers.spec import (
    DEFAULT_BASE_URLS,
    OPENAI_COMPATIBLE,
    ImportRejected,
    ImportSpec,
    PriceSpec,
    ProviderSpec,
    SecretSpec,
    check_weight,
    normalize_anthropic_base,
    safe_name,
)

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
}


def parse_litellm(doc: Any) -> ImportSpec:
    if not isinstance(doc, dict) or not isinstance(doc.get("model_list"), list):
        raise ImportRejected("not a LiteLLM config.yaml: expected a top-level \"model_list\" list")
    spec = ImportSpec()
    groups: dict[tuple[str, str, str, SecretSpec, float], list[str]] = {}
    origins: dict[tuple[str, str, str, SecretSpec, float], str] = {}
    for i, entry in enumerate(doc["model_list"]):
        where = f"model_list[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params"), dict):
            raise ImportRejected(f"{where} needs model_name and a litellm_params mapping")
        params: dict[str, Any] = entry["litellm_params"]
        model_ref = params.get("model")
        if not isinstance(model_ref, str) or not model_ref.strip():
            raise ImportRejected(f"{where}.litellm_params.model must be a string like openai/gpt-4o")
        prefix, upstream = _split_model(model_ref.strip())
        public = str(entry.get("model_name") or upstream)
        if "*" in upstream or "*" in public:
            raise ImportRejected(
                f"{where} is a wildcard route ({model_ref}); shieldes routes by explicit model names: "
                "list each model as its own entry and import again"
            )
        kind, default_base = _kind_of(prefix)
        if kind is None:
            spec.skipped.append(f"{where} ({model_ref}): LiteLLM provider {prefix!r} is not supported "
                                "by shieldes (supported: openai, anthropic and OpenAI-compatible APIs)")
            continue
        base_url = _base_url(kind, params.get("api_base"), default_base, where)
        secret = _secret(params.get("api_key"), prefix, default_base, where, spec)
        weight = check_weight(params.get("weight", 1), f"{where}.litellm_params.weight")
        if public != upstream:
            spec.notes.append(
                f"{where}: model_name {public!r} differs from upstream model {upstream!r}; shieldes serves "
                f"models under their upstream names, so clients must ask for {upstream!r}"
            )
        for limit in ("rpm", "tpm"):
            if params.get(limit) is not None:
                spec.notes.append(f"{where}.litellm_params.{limit} ignored: shieldes limits are per "
                                  "virtual key (`shieldes key create --rpm/--tpm`)")
        group = (prefix, kind, base_url, secret, weight)
        models = groups.setdefault(group, [])
        origins.setdefault(group, where)
        if upstream not in models:
            models.append(upstream)
        price = _price(upstream, params, entry.get("model_info"), where)
        if price is not None and price not in spec.prices:
            spec.prices.append(price)
    used: dict[str, int] = {}
    for (prefix, kind, base_url, secret, weight), models in groups.items():
        n = used[prefix] = used.get(prefix, 0) + 1
        name = safe_name(prefix if n == 1 else f"{prefix}-{n}")
        origin = origins[(prefix, kind, base_url, secret, weight)]
        spec.providers.append(ProviderSpec(name, kind, base_url, secret, tuple(models), weight, origin))
    for section in ("router_settings", "general_settings"):
        if isinstance(doc.get(section), dict) and doc[section]:
            spec.notes.append(f"{section!r} not imported: shieldes settings are SHIELDES_* environment "
                              "variables (see docs/configuration.md)")
    return spec


def _split_model(ref: str) -> tuple[str, str]:
    prefix, sep, rest = ref.partition("/")
    if sep and rest:
        return prefix.lower(), rest
    # No prefix: LiteLLM infers the provider from the model name.
    return ("anthropic" if ref.startswith("claude") else "openai"), ref


def _kind_of(prefix: str) -> tuple[str | None, str | None]:
    if prefix == "anthropic":
        return "anthropic", DEFAULT_BASE_URLS["anthropic"]
    if prefix in OPENAI_COMPATIBLE:
        return "openai", OPENAI_COMPATIBLE[prefix]
    if prefix == "text-completion-openai":
        return "openai", DEFAULT_BASE_URLS["openai"]
    return None, None


def _base_url(kind: str, given: Any, default: str | None, where: str) -> str:
    if isinstance(given, str) and given.strip():
        if given.startswith("os.environ/"):
            raise ImportRejected(f"{where}.litellm_params.api_base reads {given}; write the URL in the file")
        # LiteLLM hands api_base to the openai SDK as its base_url, so it is used as written.
        url = given.strip().rstrip("/")
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



def _price(model: str, params: dict[str, Any], info: Any, where: str) -> PriceSpec | None:
    sources = [params] + ([info] if isinstance(info, dict) else [])
    found: dict[str, float] = {}
    for field in ("input_cost_per_token", "output_cost_per_token"):
        for src in sources:
            value = src.get(field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ImportRejected(f"{where}: {field} must be a number >= 0, got {value!r}")
            found[field] = float(value)
            break
    if not found:
        return None
    # USD per token -> USD per million tokens; rounding strips float noise (3e-06 * 1e6 = 2.9999...).
    return PriceSpec(
        model,
        round(found.get("input_cost_per_token", 0.0) * 1_000_000, 9),
        round(found.get("output_cost_per_token", 0.0) * 1_000_000, 9),
    )
