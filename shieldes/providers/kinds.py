"""The upstream kinds `shieldes provider add --type` accepts and the settings each one takes: pure
data and validation, shared by the decide functions, the CLI, the importers and the admin API."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from shieldes.errors import CommandRejected
from shieldes.providers.vertex_options import serves_claude


def _bedrock_url(o: Mapping[str, str]) -> str:
    return f"https://bedrock-runtime.{o['region']}.amazonaws.com"


def _gemini_url(_o: Mapping[str, str]) -> str:
    return "https://generativelanguage.googleapis.com/v1beta"


def _vertex_url(o: Mapping[str, str]) -> str:
    location = o["location"]
    return "https://aiplatform.googleapis.com" if location == "global" else f"https://{location}-aiplatform.googleapis.com"


@dataclass(frozen=True)
class KindSpec:
    """`options`: the kind's own settings (CLI flag `--NAME` with `_` as `-`); `required` must be
    given; `default_base_url` builds the public endpoint when --base-url is omitted (None: the
    base URL is required); `extra`: the pip extra holding the client library this kind needs;
    `cache_marks`: the kind takes prompt-cache breakpoints (Anthropic `cache_control`) in
    requests translated for it; `thinks`: its translation turns a chat `reasoning_effort` into the
    upstream's own thinking (providers/reasoning.py), so a Messages client's `thinking` goes as one;
    `signed_thinking`: its chat translation answers Claude's signed thinking blocks and takes them
    back on assistant turns (chat `thinking_blocks`; a Responses reasoning item's encrypted_content);
    `tool_images`: its chat translation takes images in tool results (image_url parts of a `tool`
    message), so Messages and Responses clients' tool results keep theirs;
    `calls_in_order`: its streams send tool calls one after another (each call whole before the
    next starts, as content blocks or parts), so a call is done once anything else starts."""

    name: str
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    default_base_url: Callable[[Mapping[str, str]], str] | None = None
    extra: str | None = None
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cache_marks: bool = False
    thinks: bool = False
    signed_thinking: bool = False
    tool_images: bool = False
    calls_in_order: bool = False


KINDS: Mapping[str, KindSpec] = {
    "openai": KindSpec("openai"),
    "anthropic": KindSpec("anthropic", signed_thinking=True, tool_images=True, calls_in_order=True),
    # auth: `api-key` sends the key in the `api-key` header; `bearer` sends it as an Entra ID
    # token (`Authorization: Bearer`); `entra` gets tokens from azure-identity's default chain.
    "azure": KindSpec("azure", ("api_version", "auth"), ("api_version",),
                      choices={"auth": ("api-key", "bearer", "entra")}),
    "bedrock": KindSpec("bedrock", ("region",), ("region",), _bedrock_url, "bedrock", cache_marks=True,
                        thinks=True, signed_thinking=True, tool_images=True, calls_in_order=True),
    "gemini": KindSpec("gemini", (), (), _gemini_url, thinks=True, tool_images=True, calls_in_order=True),
    "vertex": KindSpec("vertex", ("project", "location", "credentials_file"), ("project", "location"),
                       _vertex_url, "vertex", thinks=True, tool_images=True, calls_in_order=True),
}
PROVIDER_KINDS: tuple[str, ...] = tuple(KINDS)
# A `vertex` deployment's Claude models speak Anthropic's wire format: what translations for them
# may carry is what they may carry for `anthropic` (spec_for)
_VERTEX_CLAUDE = replace(KINDS["anthropic"], name="vertex", options=KINDS["vertex"].options,
                         required=KINDS["vertex"].required, default_base_url=_vertex_url, extra="vertex")
# Settings every kind takes: the deployment's region (routing prefers deployments in the node's
# SHIELDES_REGION; for bedrock it is also the AWS region) and its cluster-wide quotas (rpm, tpm:
# the provider's own limits, see routing/quota.py).
COMMON_OPTIONS: tuple[str, ...] = ("region", "rpm", "tpm")
COUNT_OPTIONS: tuple[str, ...] = ("rpm", "tpm")  # whole numbers (the admin API takes them as integers)
ALL_OPTIONS: tuple[str, ...] = tuple(sorted({o for spec in KINDS.values() for o in spec.options} | set(COMMON_OPTIONS)))
_OPTION_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+ -]*$")


def spec_for(kind: str, model: str) -> KindSpec | None:
    """What translations for `model` on a deployment of `kind` may carry: the kind's, but for the
    Claude models of `vertex`, which are Anthropic's (vertex_options.serves_claude)."""
    if kind == "vertex" and serves_claude(model):
        return _VERTEX_CLAUDE
    return KINDS.get(kind)


def signs_thinking(kind: str, model: str) -> bool:
    """Whether `model` on upstreams of `kind` takes Claude's signed thinking blocks back (KindSpec.signed_thinking)."""
    spec = spec_for(kind, model)
    return spec is not None and spec.signed_thinking


def takes_tool_images(kind: str, model: str) -> bool:
    """Whether `model` on upstreams of `kind` takes images in tool results (KindSpec.tool_images)."""
    spec = spec_for(kind, model)
    return spec is not None and spec.tool_images


def calls_in_order(kind: str, model: str) -> bool:
    """Whether `model`'s streams on upstreams of `kind` send tool calls one after another (KindSpec.calls_in_order)."""
    spec = spec_for(kind, model)
    return spec is not None and spec.calls_in_order


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def check_kind(kind: str) -> KindSpec:
    spec = KINDS.get(kind)
    if spec is None:
        raise CommandRejected(f"unknown provider type {kind!r}: use one of {', '.join(PROVIDER_KINDS)}")
    return spec


def check_options(spec: KindSpec, options: Mapping[str, str]) -> dict[str, str]:
    """The options of a provider of this kind, validated: no foreign ones, required ones present."""
    for name, value in options.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise CommandRejected(f"provider options are text settings, got {name!r}: {value!r}")
        if name not in spec.options and name not in COMMON_OPTIONS:
            allowed = ", ".join(flag(o) for o in (*spec.options, *COMMON_OPTIONS))
            raise CommandRejected(f"{flag(name)} does not apply to type {spec.name!r} (its options: {allowed})")
        if not value or len(value) > 512 or (name != "credentials_file" and not _OPTION_OK.match(value)):
            raise CommandRejected(f"invalid {flag(name)} {value!r}")
        if name in COUNT_OPTIONS and not (value.isdigit() and 0 < int(value) <= 10**12):
            raise CommandRejected(f"{flag(name)} must be a whole number above 0, got {value!r}")
        allowed_values = spec.choices.get(name)
        if allowed_values is not None and value not in allowed_values:
            raise CommandRejected(f"{flag(name)} must be one of {', '.join(allowed_values)}, got {value!r}")
    missing = [o for o in spec.required if not options.get(o)]
    if missing:
        raise CommandRejected(
            f"type {spec.name!r} needs {' and '.join(flag(o) for o in missing)}; see docs/providers.md"
        )
    return dict(sorted(options.items()))


def base_url_for(spec: KindSpec, base_url: str | None, options: Mapping[str, str]) -> str:
    if base_url:
        return base_url
    if spec.default_base_url is None:
        raise CommandRejected(f"type {spec.name!r} needs --base-url (the upstream's endpoint URL)")
    return spec.default_base_url(options)
