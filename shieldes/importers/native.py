"""A `shieldes config export` file (the shieldes format) -> an ImportSpec (pure).

The file says everything the export writes: providers with their type settings and key reference,
model aliases, the prices set (patterns included), routing strategies, teams, virtual keys
(without secrets, with their MCP access) and MCP servers (header values as references). It is read
strictly: an unknown section or field is refused by name (a typo in a file kept in git must not be
ignored), and so is a version newer than this shieldes reads.
"""

from __future__ import annotations

import math
from typing import Any

from shieldes.errors import CommandRejected
from shieldes.importers.export import SHIELDES_EXPORT_VERSION
from shieldes.importers.spec import (
    AliasSpec,
    BudgetSpec,
    ImportRejected,
    ImportSpec,
    KeySpec,
    McpServerSpec,
    PriceSpec,
    ProviderSpec,
    SecretSpec,
    TeamSpec,
    check_weight,
)
from shieldes.projections.state import LongContext
from shieldes.usage.catalog import long_context_from

SECTIONS = ("providers", "aliases", "pricing", "routing", "teams", "keys", "mcp_servers")
_TOP = ("format", "version", *SECTIONS)
_FIELDS = {
    "providers": ("name", "type", "base_url", "api_key", "models", "weight", "responses", "options"),
    "aliases": ("name", "targets", "fallbacks"),
    "pricing": ("model", "input_per_1m", "output_per_1m", "cache_read_per_1m", "cache_write_per_1m", "per_image",
                "long_context", "per_web_search", "multipliers", "per_use", "modalities"),
    "routing": ("model", "strategy"),
    "teams": ("id", "name", "budget"),
    "keys": ("id", "name", "prefix", "models", "team", "rpm", "tpm", "budget", "expires_at", "revoked", "mcp"),
    "mcp_servers": ("name", "url", "headers"),
}
_REQUIRED = {
    "providers": ("name", "type", "base_url", "models"),
    "aliases": ("name", "targets"),
    "pricing": ("model", "input_per_1m", "output_per_1m"),
    "routing": ("model", "strategy"),
    "teams": ("name",),
    "keys": ("name",),
    "mcp_servers": ("name", "url"),
}
_AGAIN = "fix the file, or write it again with `shieldes config export`"


def looks_like_shieldes(doc: Any) -> bool:
    """A shieldes export: it says so (`"format": "shieldes"`), or, written before it did, it has the
    export's lists at the top level (where Bifrost has a `providers` map)."""
    if not isinstance(doc, dict):
        return False
    if doc.get("format") == "shieldes":
        return True
    return all(isinstance(doc.get(k), list) for k in ("providers", "aliases", "pricing", "teams", "keys"))


def check_version(doc: dict[str, Any]) -> int:
    """The file's format version, one this shieldes reads."""
    version = doc.get("version", 1)  # exports written before the field read as version 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ImportRejected(f"unknown shieldes export version {version!r} (this shieldes reads version "
                             f"{SHIELDES_EXPORT_VERSION}); {_AGAIN}")
    if version > SHIELDES_EXPORT_VERSION:
        raise ImportRejected(
            f"this file was written by a newer shieldes (export format version {version}; this one reads up to "
            f"{SHIELDES_EXPORT_VERSION}); upgrade shieldes here (`pip install -U shieldes`), or export the file "
            "again with this version's `shieldes config export`")
    return version


def parse_shieldes(doc: Any) -> ImportSpec:
    if not isinstance(doc, dict):
        raise ImportRejected(f"a shieldes export is a JSON object with {', '.join(SECTIONS)}; {_AGAIN}")
    if doc.get("format", "shieldes") != "shieldes":
        raise ImportRejected(f"\"format\" is {doc['format']!r}, not \"shieldes\"; pass --format bifrost or litellm "
                             "for those files, or " + _AGAIN)
    version = check_version(doc)
    unknown = sorted(set(doc) - set(_TOP))
    if unknown:
        raise ImportRejected(f"unknown section(s) {', '.join(map(repr, unknown))} in a shieldes export (it has "
                             f"{', '.join(_TOP)}); {_AGAIN}")
    spec = ImportSpec(exact_prices=True, updates_providers=True)
    for i, e in _entries(doc, "providers"):
        spec.providers.append(_provider(e, f"providers[{i}] ({e['name']!r})"))
    for i, e in _entries(doc, "aliases"):
        spec.aliases.append(_alias(e, f"aliases[{i}] ({e['name']!r})"))
    for i, e in _entries(doc, "pricing"):
        where = f"pricing[{i}] ({e['model']!r})"
        read, write, image = (_money(e.get(f), f"{where}.{f}", optional=True)
                              for f in ("cache_read_per_1m", "cache_write_per_1m", "per_image"))
        spec.prices.append(PriceSpec(e["model"], _need(_money(e["input_per_1m"], f"{where}.input_per_1m")),
                                     _need(_money(e["output_per_1m"], f"{where}.output_per_1m")), read, write, image,
                                     _long_context(e.get("long_context"), f"{where}.long_context"),
                                     _money(e.get("per_web_search"), f"{where}.per_web_search", optional=True),
                                     _numbers(e.get("multipliers"), f"{where}.multipliers"),
                                     _numbers(e.get("per_use"), f"{where}.per_use"),
                                     _numbers(e.get("modalities"), f"{where}.modalities")))
    for i, e in _entries(doc, "routing"):
        spec.routing.append((e["model"], _text(e["strategy"], f"routing[{i}] ({e['model']!r}).strategy")))
    for i, e in _entries(doc, "teams"):
        where = f"teams[{i}] ({e['name']!r})"
        spec.teams.append(TeamSpec(e["name"], _text(e.get("id"), f"{where}.id", optional=True),
                                   _budget(e.get("budget"), f"{where}.budget"), where))
    for i, e in _entries(doc, "keys"):
        spec.keys.append(_key(e, f"keys[{i}] ({e['name']!r})", mcp_said=version >= 2 or "mcp" in e))
    for i, e in _entries(doc, "mcp_servers"):
        spec.mcp_servers.append(_mcp_server(e, f"mcp_servers[{i}] ({e['name']!r})"))
    return spec


def _entries(doc: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    """The section's entries (a missing section is empty), each an object with its required fields
    and no unknown one; the first required field is a name (text)."""
    items = doc.get(section, [])
    if not isinstance(items, list):
        raise ImportRejected(f"\"{section}\" must be a list, got {type(items).__name__}; {_AGAIN}")
    out = []
    seen: dict[str, int] = {}
    for i, e in enumerate(items):
        where = f"{section}[{i}]"
        if not isinstance(e, dict):
            raise ImportRejected(f"{where} must be an object, got {e!r}; {_AGAIN}")
        missing = [f for f in _REQUIRED[section] if f not in e]
        if missing:
            raise ImportRejected(f"{where} has no {', '.join(missing)}; {_AGAIN}")
        extra = sorted(set(e) - set(_FIELDS[section]))
        if extra:
            raise ImportRejected(f"{where} has unknown field(s) {', '.join(extra)} (an entry of \"{section}\" has "
                                 f"{', '.join(_FIELDS[section])}); {_AGAIN}")
        name = _text(e[_REQUIRED[section][0]], f"{where}.{_REQUIRED[section][0]}")
        if name in seen:
            raise ImportRejected(f"{where} and {section}[{seen[name]}] are both {name!r}; keep one of them in the file")
        seen[name] = i
        out.append((i, e))
    return out


def _text(value: Any, where: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ImportRejected(f"{where} must be a non-empty string, got {value!r}; {_AGAIN}")
    return value


def _names(value: Any, where: str, *, optional: bool = False) -> tuple[str, ...] | None:
    if value is None and optional:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ImportRejected(f"{where} must be a list of names, got {value!r}; {_AGAIN}")
    return tuple(value)


def _numbers(found: Any, where: str) -> tuple[tuple[str, float], ...]:
    """{name: number}: multipliers, per-use prices (checked as `pricing set` checks them when the
    import is applied)."""
    if found is None:
        return ()
    if not isinstance(found, dict) or any(isinstance(v, bool) or not isinstance(v, int | float)
                                          for v in found.values()):
        raise ImportRejected(f"{where} must be an object of names and numbers, e.g. {{\"flex\": 0.5}}; "
                             f"got {found!r}; {_AGAIN}")
    return tuple(sorted((str(k), float(v)) for k, v in found.items()))


def _long_context(value: Any, where: str) -> LongContext | None:
    try:
        return long_context_from(value, where)
    except CommandRejected as exc:
        raise ImportRejected(f"{exc}; {_AGAIN}") from None


def _money(value: Any, where: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ImportRejected(f"{where} must be a number >= 0 (USD per 1M tokens), got {value!r}; {_AGAIN}")
    return float(value)


def _need(value: float | None) -> float:
    assert value is not None
    return value


def _weight(value: Any, where: str) -> float:
    try:
        return check_weight(value, where)
    except ImportRejected as exc:
        raise ImportRejected(f"{exc.message}; {_AGAIN}") from None


def _limit(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImportRejected(f"{where} must be a whole number >= 1 or null, got {value!r}; {_AGAIN}")
    return value


def _budget(value: Any, where: str) -> BudgetSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"amount_usd", "period"}:
        raise ImportRejected(f"{where} must be null or {{\"amount_usd\", \"period\"}}, got {value!r}; {_AGAIN}")
    amount = value["amount_usd"]
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
        raise ImportRejected(f"{where}.amount_usd must be a number >= 0, got {amount!r}; {_AGAIN}")
    return BudgetSpec(float(amount), _text(value["period"], f"{where}.period"))


def _secret(value: Any, where: str) -> SecretSpec:
    if value is None:
        return SecretSpec()
    if not isinstance(value, str) or not value:
        raise ImportRejected(f"{where}.api_key must be \"env:VAR\", \"encrypted\" or null, got {value!r}; {_AGAIN}")
    return _secret_of(value)


def _provider(e: dict[str, Any], where: str) -> ProviderSpec:
    from shieldes.providers.kinds import KINDS  # the kinds' table: read by this format only

    kind = _text(e["type"], f"{where}.type")
    if kind not in KINDS:
        raise ImportRejected(f"{where}.type {kind!r} is not a shieldes provider type (use one of "
                             f"{', '.join(sorted(KINDS))}); {_AGAIN}")
    options = e.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise ImportRejected(f"{where}.options must be an object of text settings, got {options!r}; {_AGAIN}")
    models = _names(e["models"], f"{where}.models")
    assert models is not None
    return ProviderSpec(
        name=e["name"], kind=kind, base_url=_text(e["base_url"], f"{where}.base_url"),
        secret=_secret(e.get("api_key"), where), models=models,
        weight=_weight(e.get("weight", 1.0), f"{where}.weight"), origin=where,
        options=tuple(sorted(options.items())),
        responses=_text(e.get("responses"), f"{where}.responses", optional=True),
    )


def _alias(e: dict[str, Any], where: str) -> AliasSpec:
    targets = e["targets"]
    if not isinstance(targets, list) or not targets:
        raise ImportRejected(f"{where}.targets must be a non-empty list of {{\"provider\", \"model\", \"weight\"}}; "
                             + _AGAIN)
    out = []
    for j, t in enumerate(targets):
        at = f"{where}.targets[{j}]"
        if not isinstance(t, dict) or not {"provider", "model"} <= set(t) <= {"provider", "model", "weight"}:
            raise ImportRejected(f"{at} must be {{\"provider\", \"model\", \"weight\"}}, got {t!r}; {_AGAIN}")
        out.append((_text(t["provider"], f"{at}.provider"), _text(t["model"], f"{at}.model"),
                    _weight(t.get("weight", 1.0), f"{at}.weight")))
    fallbacks = _names(e.get("fallbacks", []), f"{where}.fallbacks")
    return AliasSpec(e["name"], tuple(out), fallbacks, where)


def _mcp_server(e: dict[str, Any], where: str) -> McpServerSpec:
    headers = e.get("headers") or {}
    if not isinstance(headers, dict):
        raise ImportRejected(f"{where}.headers must be an object of header name -> \"env:VAR\" or \"encrypted\", "
                             f"got {type(headers).__name__}; {_AGAIN}")
    out = []
    for name, value in headers.items():
        if not isinstance(value, str) or not value:
            raise ImportRejected(f"{where}.headers[{name!r}] must be \"env:VAR\" or \"encrypted\" (or the value "
                                 f"itself, stored encrypted), got {type(value).__name__}; {_AGAIN}")
        out.append((name, _secret_of(value)))
    return McpServerSpec(e["name"], _text(e["url"], f"{where}.url"), tuple(out), where)


def _secret_of(value: str) -> SecretSpec:
    """A secret as the file writes it: "env:VAR", "encrypted" (the stored one), or the value itself."""
    if value.startswith("env:"):
        return SecretSpec(env_var=value[4:])
    if value == "encrypted":
        return SecretSpec(encrypted=True)
    return SecretSpec(plaintext=value)  # written by hand: stored encrypted, or refused without a key


def _key(e: dict[str, Any], where: str, *, mcp_said: bool = True) -> KeySpec:
    expires = e.get("expires_at")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
        raise ImportRejected(f"{where}.expires_at must be seconds since the epoch or null, got {expires!r}; {_AGAIN}")
    revoked = e.get("revoked", False)
    if not isinstance(revoked, bool):
        raise ImportRejected(f"{where}.revoked must be true or false, got {revoked!r}; {_AGAIN}")
    return KeySpec(
        id=_text(e.get("id"), f"{where}.id", optional=True), name=e["name"],
        models=_names(e.get("models"), f"{where}.models", optional=True),
        team=_text(e.get("team"), f"{where}.team", optional=True), rpm=_limit(e.get("rpm"), f"{where}.rpm"),
        tpm=_limit(e.get("tpm"), f"{where}.tpm"), budget=_budget(e.get("budget"), f"{where}.budget"),
        expires_at=None if expires is None else float(expires), revoked=revoked, origin=where,
        mcp=_mcp_entries(e.get("mcp"), f"{where}.mcp"), keeps_mcp=not mcp_said,
    )


def _mcp_entries(value: Any, where: str) -> tuple[str, ...] | None:
    """A key's `--mcp` entries as stored: `SERVER/*` is `SERVER` (so a file saying either matches)."""
    entries = _names(value, where, optional=True)
    return tuple(e[:-2] if e.endswith("/*") else e for e in entries) or None if entries else None
