"""Admin API routes that change what serves requests: providers (deployments), model aliases and
pricing. Every write goes through the same decide functions as the CLI (`execute_live`), with the
caller as the recorded actor; a refused command appends nothing."""

from __future__ import annotations

from typing import Any

from shieldes import secrets
from shieldes.errors import InvalidRequest, NotFound
from shieldes.gateway.admin.api import PAGE_FIELDS, Call, Field, Route, page
from shieldes.gateway.admin.config_routes import created_status, with_position, write_command
from shieldes.projections.commands import UNSET
from shieldes.projections.shared_commands import (
    AddProvider,
    RemoveModelAlias,
    RemoveProvider,
    SetModelAlias,
    SetPricing,
    UnsetPricing,
    UpdateProvider,
    parse_alias_target,
)
from shieldes.projections.state import ModelAlias
from shieldes.providers.kinds import ALL_OPTIONS, COMMON_OPTIONS, COUNT_OPTIONS, KINDS, PROVIDER_KINDS
from shieldes.roles import ADMIN, READ
from shieldes.usage.catalog import long_context_from, price_rows
from shieldes.usage.pricing import unpriced
from shieldes.views import alias_row, provider_row, takeover_warnings

# --- providers and pricing -----------------------------------------------------------------------------


def _secret_ref(call: Call) -> str | None:
    env, key = call.body.get("api_key_env"), call.body.get("api_key")
    if env is not None and key is not None:
        raise InvalidRequest("send either api_key_env or api_key, not both")
    if env is not None:
        return secrets.env_ref(env)
    if key is not None:
        if not key.strip():
            raise InvalidRequest("api_key is empty; send the provider's key or use api_key_env", param="api_key")
        encryption_key = secrets.encryption_key_for(call.ctx.settings, create=True)
        if encryption_key is None:  # the node's setup, but the request can be sent another way: not a 500
            raise InvalidRequest(secrets.NO_ENCRYPTION_KEY)
        return secrets.encrypt_secret(key, encryption_key)
    return None


async def list_providers(call: Call) -> Any:
    state = call.ctx.projector.config
    return page([provider_row(d) for d in sorted(state.providers.values(), key=lambda d: d.name)], "name", call)


def _options(b: dict[str, Any]) -> dict[str, str] | None:
    """The type's settings: the `options` object and the same settings as top-level fields (the
    CLI's flags, e.g. `api_version`); None when neither is given."""
    if "options" not in b and not any(o in b for o in ALL_OPTIONS):
        return None
    out = {k: _option_text(k, v) for k, v in (b.get("options") or {}).items()}
    for name in ALL_OPTIONS:
        if name in b:
            value = _option_text(name, b[name])
            if name in out and out[name] != value:
                raise InvalidRequest(f"{name!r} is given both as a field and in options with different values; "
                                     "give it once", param=name)
            out[name] = value
    return out


def _option_text(name: str, value: Any) -> Any:
    """Settings are stored as text (like the CLI's flags); counts may come as JSON integers."""
    if name in COUNT_OPTIONS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


async def add_provider(call: Call) -> Any:
    b = call.body
    written = await write_command(call, AddProvider(b["name"], b["type"], b.get("base_url"), _secret_ref(call),
                                                    tuple(b["models"]), b.get("weight", 1.0),
                                                    b.get("responses") or "translate", _options(b) or {}))
    row = with_position(provider_row(written.state.providers[b["name"]]), written)
    row["unpriced_models"] = unpriced(written.state.pricing, written.events[0].data["models"])
    return created_status(written), row


async def update_provider(call: Call) -> Any:
    b = call.body
    ref: Any = _secret_ref(call)
    if b.get("clear_api_key"):
        if ref is not None:
            raise InvalidRequest("clear_api_key cannot be combined with api_key_env or api_key")
        ref = None
    elif ref is None:
        ref = UNSET
    if set(b) <= {"clear_api_key"} and ref is UNSET:
        raise InvalidRequest("nothing to change: send base_url, models, weight, responses, options (or one of "
                             f"{', '.join(ALL_OPTIONS)}), api_key_env, api_key or clear_api_key")
    command = UpdateProvider(call.path["name"], b.get("base_url"), ref,
                             tuple(b["models"]) if b.get("models") is not None else None, b.get("weight"),
                             b.get("responses"), _options(b))
    written = await write_command(call, command)
    return with_position(provider_row(written.state.providers[call.path["name"]]), written)


async def remove_provider(call: Call) -> Any:
    written = await write_command(call, RemoveProvider(call.path["name"]))
    return {"name": call.path["name"], "removed": True, "position": written.events[-1].position}


async def list_pricing(call: Call) -> Any:
    state = call.ctx.projector.config
    source = call.query.get("source") or "all"
    rows = [r for r in price_rows(state.pricing) if source == "all" or r["source"] == source]
    return page(rows, "model", call)


async def set_pricing(call: Call) -> Any:
    b = call.body
    cache = (b.get("cache_read_per_1m"), b.get("cache_write_per_1m"))
    per_image = b.get("per_image")
    long = long_context_from(b.get("long_context"))
    per_search = b.get("per_web_search")
    factors = _pairs(b.get("multipliers"), "multipliers", '{"flex": 0.5}')
    uses = _pairs(b.get("per_use"), "per_use", '{"file_search": 0.0025}')
    kinds = _pairs(b.get("modalities"), "modalities", '{"audio_input": 40, "audio_output": 80}')
    written = await write_command(call, SetPricing(call.path["model"], b["input_per_1m"], b["output_per_1m"], *cache,
                                                   per_image, long, per_search, factors, uses, kinds))
    return {"model": call.path["model"], "input_per_1m": b["input_per_1m"], "output_per_1m": b["output_per_1m"],
            "cache_read_per_1m": cache[0], "cache_write_per_1m": cache[1], "per_image": per_image,
            "long_context": None if long is None else long.fields(), "per_web_search": per_search,
            "multipliers": dict(factors) or None, "per_use": dict(uses) or None,
            "modalities": dict(kinds) or None, "position": written.events[-1].position}


def _pairs(given: Any, name: str, example: str) -> tuple[tuple[str, float], ...]:
    """An object of {name: number} as sorted pairs (checked where the price is set)."""
    if given is None:
        return ()
    if not isinstance(given, dict):
        raise InvalidRequest(f"{name} must be an object such as {example}", param=name)
    return tuple(sorted(given.items()))


async def unset_pricing(call: Call) -> Any:
    written = await write_command(call, UnsetPricing(call.path["model"]))
    return {"model": call.path["model"], "removed": True, "position": written.events[-1].position}


# --- model aliases -------------------------------------------------------------------------------------


def _alias(call: Call) -> ModelAlias:
    alias = call.ctx.projector.config.aliases.get(call.path["name"])
    if alias is None:
        raise NotFound(f"no alias named {call.path['name']!r}; see GET /admin/v1/aliases", code="alias_not_found")
    return alias


async def list_aliases(call: Call) -> Any:
    return page([alias_row(a) for _, a in sorted(call.ctx.projector.config.aliases.items())], "name", call)


async def get_alias(call: Call) -> Any:
    return alias_row(_alias(call))


async def set_alias(call: Call) -> Any:
    name, b = call.path["name"], call.body
    state = call.ctx.projector.config
    targets = tuple(parse_alias_target(state, spec) for spec in b["targets"])
    written = await write_command(call, SetModelAlias(name, targets, tuple(b.get("fallbacks") or ())))
    alias = written.state.aliases[name]
    return {**with_position(alias_row(alias), written), "warnings": takeover_warnings(written.state, alias)}


async def remove_alias(call: Call) -> Any:
    written = await write_command(call, RemoveModelAlias(call.path["name"]))
    return {"name": call.path["name"], "removed": True, "position": written.events[-1].position}


# --- the table ---------------------------------------------------------------------------------------

_OPTION_HELP = {"rpm": "the deployment's own requests per minute, held by the whole cluster: ",
                "tpm": "the deployment's own tokens per minute, held by the whole cluster: ",
                "region": "the deployment's region (routing prefers the node's SHIELDES_REGION; the AWS region "
                          "for bedrock): "}
_PROVIDER = (
    Field("base_url", "string", "the upstream API base URL, e.g. https://api.openai.com/v1"),
    Field("api_key_env", "string", "environment variable holding the provider key on each node"),
    Field("api_key", "string", "the provider key itself; stored encrypted (needs SHIELDES_ENCRYPTION_KEY)"),
    Field("models", "array", "models this deployment serves"),
    Field("weight", "number", "share of traffic among deployments of a model"),
    Field("responses", "string", "how POST /v1/responses reaches it: translate (chat completions) or native "
          "(its own /v1/responses, openai and azure types)", enum=("translate", "native")),
    *(Field(o, "integer" if o in COUNT_OPTIONS else "string", _OPTION_HELP.get(o, "") + (
        "a setting of any type" if o in COMMON_OPTIONS else
        f"a setting of type {', '.join(k for k, spec in KINDS.items() if o in spec.options)}")
        + f" (the CLI's --{o.replace('_', '-')}; or put it in options)") for o in ALL_OPTIONS),
    Field("options", "object", "the type's own settings, e.g. {\"api_version\": \"2024-10-21\"} (azure), "
          "{\"region\": ...} (bedrock), {\"project\", \"location\", \"credentials_file\"} (vertex)"),
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/providers", list_providers, READ, "List providers (deployments)", "providers", query=PAGE_FIELDS),
    Route("POST", "/providers", add_provider, ADMIN, "Add a provider deployment", "providers",
          body=(Field("name", "string", "unique deployment name", required=True),
                Field("type", "string", "upstream API kind", required=True, enum=PROVIDER_KINDS),
                *(Field(f.name, f.type, f.description, required=f.name == "models")
                  for f in _PROVIDER)), idempotent_create=True),
    Route("PATCH", "/providers/{name}", update_provider, ADMIN, "Change some fields of a provider", "providers",
          body=(*_PROVIDER, Field("clear_api_key", "boolean", "true removes the stored key reference"))),
    Route("DELETE", "/providers/{name}", remove_provider, ADMIN, "Remove a provider deployment", "providers"),
    Route("GET", "/aliases", list_aliases, READ, "List model aliases with their targets and fallbacks", "aliases",
          query=PAGE_FIELDS),
    Route("GET", "/aliases/{name:.+}", get_alias, READ, "Show one model alias", "aliases"),
    Route("PUT", "/aliases/{name:.+}", set_alias, ADMIN, "Create or replace a model alias", "aliases",
          body=(Field("targets", "array", "PROVIDER/MODEL[:WEIGHT] deployments serving the alias (weight default 1)",
                      required=True),
                Field("fallbacks", "array", "models or aliases tried in order once every target failed or the "
                      "prompt is too long"))),
    Route("DELETE", "/aliases/{name:.+}", remove_alias, ADMIN, "Remove a model alias", "aliases"),
    Route("GET", "/pricing", list_pricing, READ, "List model prices: the shipped catalog and overrides", "pricing",
          query=(Field("source", "string", "only shipped defaults or only overrides",
                       enum=("all", "default", "override")), *PAGE_FIELDS)),
    Route("DELETE", "/pricing/{model:.+}", unset_pricing, ADMIN, "Remove a price set for a model or pattern "
          "(the shipped catalog's price, or a pattern's, applies again)", "pricing"),
    Route("PUT", "/pricing/{model:.+}", set_pricing, ADMIN, "Set a model's price, or a pattern's (`claude-opus-*`: "
          "every name it matches without an exact price)", "pricing",
          body=(Field("input_per_1m", "number", "USD per 1M prompt tokens", required=True),
                Field("output_per_1m", "number", "USD per 1M completion tokens", required=True),
                Field("cache_read_per_1m", "number", "USD per 1M prompt tokens read from the prompt cache "
                      "(default: the input price)", nullable=True),
                Field("cache_write_per_1m", "number", "USD per 1M prompt tokens written to the prompt cache "
                      "(default: the input price)", nullable=True),
                Field("per_image", "number", "USD per generated image, for image answers that carry no token "
                      "usage (dall-e-2/3)", nullable=True),
                Field("long_context", "object", "the prices of a request whose prompt has more than "
                      "`above_tokens` tokens, for every token of it: {above_tokens, input_per_1m, output_per_1m, "
                      "cache_read_per_1m?, cache_write_per_1m?} (Gemini 2.5/3 Pro, Claude Sonnet 4/4.5 above "
                      "200000)", nullable=True),
                Field("multipliers", "object", "{where: factor}: every token price times factor where the "
                      "upstream bills so: flex (0.5), priority (OpenAI: 1.7-2), the service tier the answer says "
                      "served it; regional (1.1), a Vertex AI deployment whose location is not global",
                      nullable=True),
                Field("per_use", "object", "{tool: USD per use} of hosted tools the upstream bills per use: "
                      "file_search (OpenAI Responses file_search_call: 0.0025), container (a code interpreter "
                      "container: 0.03)", nullable=True),
                Field("modalities", "object", "{kind: USD per 1M tokens} the upstream reports as audio or image "
                      "and bills apart from text: audio_input, audio_cache_read, audio_output, image_input, "
                      "image_cache_read, image_output (gpt-4o-audio-preview: {\"audio_input\": 40, "
                      "\"audio_output\": 80}); a kind not set costs the text price", nullable=True),
                Field("per_web_search", "number", "USD per server-side web search the upstream reports (Claude's "
                      "web search tool: 0.01)", nullable=True))),
)
