"""Bifrost `governance` -> shieldes teams and virtual keys (pure).

Teams (with their budget) are created as `shieldes team create` would. A virtual key whose `value`
the file gives (the key, or `env.VAR` read when importing) is created with that secret, so clients
keep it; one without is listed (`missing`) with the
`shieldes key create` command that makes it (a new secret, printed once), with its models (the
provider configs' allowed_models), team, budget, rpm/tpm (rate limits reset every minute) and MCP
access. A key of that name already here takes those settings, as from a shieldes export. What has
no equivalent (customers, limits over other windows) is named in notes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shieldes.importers.spec import BudgetSpec, ImportRejected, ImportSpec, KeySpec, TeamSpec, safe_name
from shieldes.secrets import hash_key

_DURATION = re.compile(r"^([1-9][0-9]*)([smhdwMY])$")


def parse_governance(gov: Any, spec: ImportSpec) -> None:
    if not isinstance(gov, dict):
        return
    budgets = _by_id(gov, "budgets")
    limits = _by_id(gov, "rate_limits")
    teams: dict[str, str] = {}  # Bifrost team id -> name
    for i, team in enumerate(_list(gov, "teams")):
        where = f"governance.teams[{i}]"
        name = _name(team, where)
        teams[str(team.get("id", name))] = name
        spec.teams.append(TeamSpec(name, None, _budget(budgets, team.get("budget_id"), where, spec), where))
    if gov.get("customers"):
        spec.notes.append("governance.customers not imported: shieldes has teams, not customers; put each "
                          "customer's keys in a team (`shieldes team create NAME --budget`)")
    for i, vk in enumerate(_list(gov, "virtual_keys")):
        where = f"governance.virtual_keys[{i}]"
        name = _name(vk, where)
        team_name = teams.get(str(vk.get("team_id"))) if vk.get("team_id") else None
        if vk.get("team_id") and team_name is None:
            raise ImportRejected(f"{where}.team_id {vk['team_id']!r} names no team of governance.teams; fix it")
        rpm, tpm = _rate(limits, vk.get("rate_limit_id"), where, spec)
        spec.keys.append(KeySpec(None, name, _models(vk, where, spec), team_name, rpm, tpm,
                                 _budget(budgets, vk.get("budget_id"), where, spec), None,
                                 vk.get("is_active") is False, where, _mcp(vk, where), **_secret(vk, where)))
    if any(k.key_hash is None and k.secret_env is None for k in spec.keys):
        spec.notes.append("governance.virtual_keys without a value are listed with the `shieldes key create` "
                          "command that makes each: a new secret (printed once), so those clients get new keys")
    if any(k.key_hash is not None or k.secret_env is not None for k in spec.keys):
        spec.notes.append("governance.virtual_keys keep their values as their secrets: clients sending one as "
                          "`Authorization: Bearer`, `x-api-key`, `api-key`, `x-goog-api-key` or Bifrost's own "
                          "`x-bf-vk` keep working")


def _secret(vk: dict[str, Any], where: str) -> dict[str, Any]:
    """The key's secret as the file gives it (`value`): its hash, or the variable holding it (read by
    `with_secrets` when importing). None given: the key gets a new secret."""
    value = vk.get("value")
    if value is None or value == "":
        return {}
    if not isinstance(value, str):
        raise ImportRejected(f"{where}.value must be the virtual key (sk-bf-...) or env.VAR, got {value!r}")
    if value.startswith("env."):
        return {"secret_env": value.removeprefix("env.")}
    return {"key_hash": hash_key(value), "prefix": _shown(value)}


def _shown(secret: str) -> str:
    """What key lists show of a virtual key: its `sk-bf-` and four characters, as shieldes shows its own."""
    return secret[:len("sk-bf-") + 4] if secret.startswith("sk-bf-") else secret[:4]


def with_secrets(spec: ImportSpec, environ: Mapping[str, str]) -> None:
    """The hashes of keys whose secret the file gives as `env.VAR`, from the importing environment; a
    key whose variable is not set there gets a new secret, with a note saying which to set."""
    unset: list[str] = []
    for i, key in enumerate(spec.keys):
        if key.secret_env is None or key.key_hash is not None:
            continue
        value = environ.get(key.secret_env)
        if value:
            spec.keys[i] = replace(key, key_hash=hash_key(value), prefix=_shown(value))
        else:
            spec.keys[i] = replace(key, secret_env=None)
            unset.append(f"{key.name} ({key.secret_env})")
    if unset:
        spec.notes.append(f"virtual keys {', '.join(unset)}: the variable holding the key is not set here, so the "
                          "key is listed with the command that makes a new one; set it and import again to keep it")


def _list(gov: dict[str, Any], section: str) -> list[dict[str, Any]]:
    items = gov.get(section) or []
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise ImportRejected(f"governance.{section} must be a list of objects")
    return items


def _by_id(gov: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    return {str(x.get("id")): x for x in _list(gov, section)}


def _name(item: dict[str, Any], where: str) -> str:
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ImportRejected(f"{where} has no name; give it one")
    return safe_name(name)


def _period(duration: Any) -> str | None:
    """Bifrost's reset_duration as a shieldes budget period, or None when there is none."""
    m = _DURATION.match(str(duration or ""))
    if m is None:
        return None
    n, unit = int(m.group(1)), m.group(2)
    days = {"d": n, "w": 7 * n, "Y": 365 * n}.get(unit)
    if unit == "M" and n == 1:
        return "1mo"
    return f"{days}d" if days is not None and days <= 366 else None


def _budget(budgets: dict[str, dict[str, Any]], budget_id: Any, where: str, spec: ImportSpec) -> BudgetSpec | None:
    if not budget_id:
        return None
    budget = budgets.get(str(budget_id))
    if budget is None:
        raise ImportRejected(f"{where}.budget_id {budget_id!r} names no budget of governance.budgets; fix it")
    amount, period = budget.get("max_limit"), _period(budget.get("reset_duration"))
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
        raise ImportRejected(f"governance.budgets {budget_id!r}.max_limit must be a number of USD >= 0")
    if period is None:
        spec.notes.append(f"{where}: budget {budget_id!r} (${amount:g} per {budget.get('reset_duration')}) not "
                          "imported: shieldes budgets run over Nd (1d..366d) or 1mo; set one with "
                          "`shieldes budget set`")
        return None
    return BudgetSpec(float(amount), period)


def _rate(limits: dict[str, dict[str, Any]], limit_id: Any, where: str,
          spec: ImportSpec) -> tuple[int | None, int | None]:
    if not limit_id:
        return None, None
    limit = limits.get(str(limit_id))
    if limit is None:
        raise ImportRejected(f"{where}.rate_limit_id {limit_id!r} names no rate limit of governance.rate_limits; "
                             "fix it")
    out: list[int | None] = []
    for kind, field in (("request", "rpm"), ("token", "tpm")):
        value, reset = limit.get(f"{kind}_max_limit"), limit.get(f"{kind}_reset_duration")
        if value is None:
            out.append(None)
        elif reset == "1m" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out.append(value)
        else:
            out.append(None)
            spec.notes.append(f"{where}: rate limit {limit_id!r} {kind}_max_limit {value!r} per {reset} not imported: "
                              f"shieldes key limits are per minute (`key update --{field}`)")
    return out[0], out[1]


def _models(vk: dict[str, Any], where: str, spec: ImportSpec) -> tuple[str, ...] | None:
    """The models the key may use: every provider config's allowed_models (clients name them
    PROVIDER/MODEL; the key's list holds MODEL, which allows both); None: every model."""
    given = vk.get("provider_configs") or []
    if not isinstance(given, list) or not all(isinstance(c, dict) and isinstance(c.get("allowed_models") or [], list)
                                              for c in given):
        raise ImportRejected(f"{where}.provider_configs must be a list of {{\"provider\", \"allowed_models\": "
                             "[...]}} objects")
    configs: list[dict[str, Any]] = given
    if not configs:
        return None
    if any(c.get("weight") not in (None, 1, 1.0) or c.get("key_ids") not in (None, ["*"]) for c in configs):
        spec.notes.append(f"{where}.provider_configs weight/key_ids not imported: a shieldes key reaches every "
                          "provider serving its models, by the providers' weights")
    models: list[str] = []
    for c in configs:
        allowed = c.get("allowed_models")
        if not allowed or "*" in allowed:
            providers = ", ".join(str(c.get("provider")) for c in configs)
            spec.notes.append(f"{where}: the key may use every model of {providers} in Bifrost; a shieldes key's "
                              "--models names models, not providers, so its command allows every model: list them "
                              "(`--models 'gpt-*,claude-*'`) to keep it to those providers")
            return None
        models.extend(m for m in allowed if isinstance(m, str) and m not in models)
    return tuple(models) or None


def _mcp(vk: dict[str, Any], where: str) -> tuple[str, ...] | None:
    out: list[str] = []
    configs = vk.get("mcp_configs") or []
    if not isinstance(configs, list) or not all(
            isinstance(c, dict) and isinstance(c.get("mcp_client_name"), str)
            and isinstance(c.get("tools_to_execute") or [], list) for c in configs):
        raise ImportRejected(f"{where}.mcp_configs must be a list of {{\"mcp_client_name\", \"tools_to_execute\": "
                             "[...]}} objects")
    for c in configs:
        server = safe_name(c["mcp_client_name"])
        tools = c.get("tools_to_execute") or ["*"]
        out.extend([server] if "*" in tools else [f"{server}/{t}" for t in tools if isinstance(t, str)])
    return tuple(out) or None
