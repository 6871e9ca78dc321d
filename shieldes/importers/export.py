"""ConfigState -> a document in shieldes, Bifrost or LiteLLM shape (pure). Never a plaintext secret:
environment references are kept, encrypted keys are left out and reported in `warnings`."""

from __future__ import annotations

from typing import Any

from shieldes.importers.spec import OPENAI_COMPATIBLE
from shieldes.projections.state import Budget, ConfigState, Deployment

EXPORT_FORMATS = ("shieldes", "bifrost", "litellm")


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


def export_shieldes(state: ConfigState) -> tuple[dict[str, Any], list[str]]:
    teams = {t.id: t.name for t in state.teams.values()}
    doc = {
        "providers": [
            {"name": d.name, "type": d.kind, "base_url": d.base_url, "api_key": _key_label(d.secret_ref),
             "models": list(d.models), "weight": d.weight}
            for d in sorted(state.providers.values(), key=lambda d: d.name)
        ],
        "pricing": [
            {"model": m, **p.fields()}
            for m, p in sorted(state.pricing.items())
        ],
        "teams": [
            {"id": t.id, "name": t.name, "budget": _budget(t.budget)}
            for t in sorted(state.teams.values(), key=lambda t: t.name)
        ],
        "keys": [
            {"id": k.id, "name": k.name, "prefix": k.prefix, "models": list(k.models) if k.models else None,
             "team": teams.get(k.team_id) if k.team_id else None, "rpm": k.rpm, "tpm": k.tpm,
             "budget": _budget(k.budget), "expires_at": k.expires_at, "revoked": k.revoked}
            for k in sorted(state.keys.values(), key=lambda k: k.name)
        ],
    }
    return doc, []


def export_bifrost(state: ConfigState) -> tuple[dict[str, Any], list[str]]:
    providers: dict[str, Any] = {}
    warnings: list[str] = []
    for d in sorted(state.providers.values(), key=lambda d: d.name):
        var = _env_var(d.secret_ref)
        if d.secret_ref and var is None:
            warnings.append(_encrypted_warning(d))
        # Bifrost appends /v1/... itself, so its OpenAI-style base URLs stop before /v1.
        base = d.base_url.removesuffix("/v1") if d.kind == "openai" else d.base_url
        entry: dict[str, Any] = {
            "keys": [{"name": d.name, "value": f"env.{var}" if var else "", "models": list(d.models),
                      "weight": d.weight}],
            "network_config": {"base_url": base},
        }
        if d.name not in ("openai", "anthropic") and d.name not in OPENAI_COMPATIBLE:
            entry["custom_provider_config"] = {"base_provider_type": d.kind}
        providers[d.name] = entry
    return {"providers": providers}, warnings


def export_litellm(state: ConfigState) -> tuple[dict[str, Any], list[str]]:
    model_list: list[dict[str, Any]] = []
    warnings: list[str] = []
    for d in sorted(state.providers.values(), key=lambda d: d.name):
        var = _env_var(d.secret_ref)
        if d.secret_ref and var is None:
            warnings.append(_encrypted_warning(d))
        for model in d.models:
            params: dict[str, Any] = {"model": f"{d.kind}/{model}", "api_base": d.base_url}
            if var:
                params["api_key"] = f"os.environ/{var}"
            if d.weight != 1.0:
                params["weight"] = d.weight
            price = state.pricing.get(model)
            if price is not None:
                params["input_cost_per_token"] = price.input_per_1m / 1_000_000
                params["output_cost_per_token"] = price.output_per_1m / 1_000_000
                if price.cache_read_per_1m is not None:
                    params["cache_read_input_token_cost"] = price.cache_read_per_1m / 1_000_000
                if price.cache_write_per_1m is not None:
                    params["cache_creation_input_token_cost"] = price.cache_write_per_1m / 1_000_000
            model_list.append({"model_name": model, "litellm_params": params})
    return {"model_list": model_list}, warnings


def export(state: ConfigState, fmt: str) -> tuple[dict[str, Any], list[str]]:
    if fmt == "bifrost":
        return export_bifrost(state)
    if fmt == "litellm":
        return export_litellm(state)
    return export_shieldes(state)
