"""`shieldes provider add|list|update|remove`: upstream deployments. Keys are stored as `env:VAR`
references or encrypted (SHIELDES_ENCRYPTION_KEY, or the embedded database's local key); listings
never show them."""

from __future__ import annotations

from typing import Any

import click

from shieldes import secrets
from shieldes.cli.common import cli_context, json_option, list_named, remove_named, run, split_list, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit, warn
from shieldes.errors import InvalidRequest
from shieldes.projections.commands import UNSET
from shieldes.projections.shared_commands import RESPONSES_MODES, AddProvider, RemoveProvider, UpdateProvider
from shieldes.providers.kinds import PROVIDER_KINDS
from shieldes.usage.pricing import unpriced, unpriced_warning
from shieldes.views import provider_row

COLUMNS = ("name", "type", "base_url", "models", "weight", "api_key", "responses", "options")


def kind_options(f: Any) -> Any:
    """The per-kind settings flags (see providers.kinds.KINDS), shared by `add` and `update`."""
    for name, help_ in reversed((
        ("--api-version", "azure: the api-version query parameter, e.g. 2024-10-21"),
        ("--auth", "azure: api-key (default), bearer (the key is an Entra ID token) or entra (azure-identity)"),
        ("--region", "the deployment's region: routing prefers deployments in the node's SHIELDES_REGION "
                     "(bedrock: also the AWS region, e.g. us-east-1)"),
        ("--rpm", "the deployment's own requests-per-minute quota, held by the whole cluster"),
        ("--tpm", "the deployment's own tokens-per-minute quota, held by the whole cluster"),
        ("--project", "vertex: Google Cloud project id"),
        ("--location", "vertex: region such as us-central1, or global"),
        ("--credentials-file", "vertex: service-account JSON (default: Application Default Credentials)"),
    )):
        f = click.option(name, metavar="V", help=help_)(f)
    return f


def options_of(**given: str | None) -> dict[str, str]:
    return {k: v for k, v in given.items() if v is not None}


def secret_ref(api_key_env: str | None, api_key: str | None) -> str | None:
    if api_key_env is not None and api_key is not None:
        raise InvalidRequest("pass either --api-key-env VAR or --api-key S, not both")
    if api_key_env is not None:
        return secrets.env_ref(api_key_env)
    if api_key is not None:
        if not api_key.strip():
            raise InvalidRequest("--api-key is empty; pass the provider's key or use --api-key-env VAR")
        return secrets.encrypt_secret(api_key, secrets.encryption_key_for(cli_context().settings, create=True))
    return None


def _key_fields(api_key_env: str | None, api_key: str | None) -> dict[str, str]:
    """The provider key as the admin API takes it: the node stores `env:VAR`, or encrypts the key
    with its own SHIELDES_ENCRYPTION_KEY."""
    if api_key_env is not None and api_key is not None:
        raise InvalidRequest("pass either --api-key-env VAR or --api-key S, not both")
    if api_key is not None and not api_key.strip():
        raise InvalidRequest("--api-key is empty; pass the provider's key or use --api-key-env VAR")
    return {k: v for k, v in (("api_key_env", api_key_env), ("api_key", api_key)) if v is not None}


def _update_remote(name: str, base_url: str | None, api_key_env: str | None, api_key: str | None, no_api_key: bool,
                   models: str | None, weight: float | None, responses: str | None, changed: dict[str, str]) -> None:
    from shieldes.cli.remote import segment

    ctx = cli_context()
    api = ctx.remote()
    assert api is not None
    body: dict[str, Any] = {k: v for k, v in (("base_url", base_url), ("weight", weight), ("responses", responses))
                            if v is not None}
    body.update(_key_fields(api_key_env, api_key))
    if no_api_key:
        body["clear_api_key"] = True
    if models is not None:
        body["models"] = list(split_list(models) or ())
    if changed:
        body["options"] = changed
    if not body:
        raise InvalidRequest("nothing to change: pass --base-url, --models, --weight, --responses, an --api-key "
                             "option or a type setting such as --api-version")
    answer = api.call("PATCH", f"/providers/{segment(name)}", body)
    emit({**{c: answer[c] for c in COLUMNS}, "position": answer["position"]}, as_json=ctx.as_json)


@click.group("provider", cls=OneLineGroup)
def provider_group() -> None:
    """Upstream LLM deployments (providers)."""


@provider_group.command("add")
@click.argument("name")
@click.option("--type", "kind", required=True, type=click.Choice(PROVIDER_KINDS), help="upstream API kind")
@click.option("--base-url", help="e.g. https://api.openai.com/v1 (bedrock, gemini, vertex: optional)")
@click.option("--api-key-env", metavar="VAR", help="environment variable holding the key on each node")
@click.option("--api-key", metavar="S",
              help="the key itself, stored encrypted (with SHIELDES_ENCRYPTION_KEY, else a local key next to "
                   "the embedded database)")
@click.option("--models", required=True, help="comma-separated models this deployment serves")
@click.option("--weight", type=float, default=1.0, show_default=True,
              help="share of traffic among deployments")
@click.option("--responses", "responses", type=click.Choice(RESPONSES_MODES), default="translate",
              show_default=True,
              help="how /v1/responses reaches it: translate (via chat completions) or native (its own "
                   "/v1/responses, openai and azure types)")
@kind_options
@json_option
@handle_errors
def add(
    name: str, kind: str, base_url: str | None, api_key_env: str | None, api_key: str | None, models: str,
    weight: float, responses: str, as_json: bool, **options: str | None,
) -> None:
    """Add a deployment NAME serving --models (docs/providers.md has a line per type)."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        body = {"name": name, "type": kind, "base_url": base_url, "models": list(split_list(models) or ()),
                "weight": weight, "responses": responses, **_key_fields(api_key_env, api_key),
                **({"options": options_of(**options)} if options_of(**options) else {})}
        answer = api.call("POST", "/providers", {k: v for k, v in body.items() if v is not None}, create=True)
        row = {c: answer[c] for c in (*COLUMNS, "position")}
        if answer.get("unpriced_models"):
            row["unpriced_models"] = answer["unpriced_models"]
            warn(unpriced_warning(answer["unpriced_models"]))
        emit(row, as_json=ctx.as_json)
        return
    ref = secret_ref(api_key_env, api_key)
    command = AddProvider(name, kind, base_url, ref, split_list(models) or (), weight, responses,
                          options_of(**options))
    written = run(write(command))
    state_row = {**provider_row(written.state.providers[name]), "position": written.position}
    missing = unpriced(written.state.pricing, written.events[0].data["models"])
    if missing:
        state_row["unpriced_models"] = missing
        warn(unpriced_warning(missing))
    emit(state_row, as_json=ctx.as_json)


@provider_group.command("update")
@click.argument("name")
@click.option("--base-url", help="new base URL")
@click.option("--api-key-env", metavar="VAR", help="read the key from this environment variable")
@click.option("--api-key", metavar="S", help="new key, stored encrypted (as with `provider add --api-key`)")
@click.option("--no-api-key", is_flag=True, help="remove the stored key reference")
@click.option("--models", help="new comma-separated model list (replaces the old one)")
@click.option("--weight", type=float, help="new weight")
@click.option("--responses", "responses", type=click.Choice(RESPONSES_MODES),
              help="how /v1/responses reaches it: translate or native")
@kind_options
@json_option
@handle_errors
def update(
    name: str, base_url: str | None, api_key_env: str | None, api_key: str | None, no_api_key: bool,
    models: str | None, weight: float | None, responses: str | None, as_json: bool, **options: str | None,
) -> None:
    """Change some fields of deployment NAME; the others keep their values."""
    ctx = cli_context()
    if no_api_key and (api_key_env is not None or api_key is not None):
        raise InvalidRequest("--no-api-key cannot be combined with --api-key-env or --api-key")
    api = ctx.remote()
    if api is not None:
        _update_remote(name, base_url, api_key_env, api_key, no_api_key, models, weight, responses,
                       options_of(**options))
        return
    ref = secret_ref(api_key_env, api_key)
    new_ref: str | object | None = None if no_api_key else (ref if ref is not None else UNSET)
    changed = options_of(**options)
    if base_url is None and new_ref is UNSET and models is None and weight is None and responses is None \
            and not changed:
        raise InvalidRequest("nothing to change: pass --base-url, --models, --weight, --responses, an --api-key "
                             "option or a type setting such as --api-version")
    command = UpdateProvider(name, base_url, new_ref, split_list(models), weight,  # type: ignore[arg-type]
                             responses, changed or None)
    written = run(write(command))
    # the provider as `provider list` shows it, every field (not only those changed), and the position
    emit({**provider_row(written.state.providers[name]), "position": written.position}, as_json=ctx.as_json)


@provider_group.command("remove")
@click.argument("name")
@json_option
@handle_errors
def remove(name: str, as_json: bool) -> None:
    """Remove deployment NAME (requests stop routing to it)."""
    remove_named("name", name, "providers", RemoveProvider(name))


@provider_group.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """All deployments (keys shown only as env:VAR or 'encrypted')."""
    list_named("providers", COLUMNS,
               lambda state: [provider_row(d) for d in sorted(state.providers.values(), key=lambda d: d.name)])
