"""LiteLLM's virtual keys and teams -> shieldes keys and teams (pure).

The source is what LiteLLM's admin API answers (`GET /key/list?return_full_object=true`: {"keys":
[...]}; `GET /team/list`, or `/v2/team/list`'s {"teams": [...]}), or the rows of its
`LiteLLM_VerificationToken` and `LiteLLM_TeamTable` tables, which have the same fields. LiteLLM
stores a key as the sha256 hex of its secret (`token`), as shieldes does, so each key is created
with that hash: clients keep sending the key they have. Its alias (else a name made from the hash),
models, rpm/tpm, budget, team and expiry come along; a blocked key is not created; what shieldes
has no place for (the spend so far, per-model budgets, parallel request caps, ...) is named in notes.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from shieldes.importers.spec import BudgetSpec, ImportRejected, ImportSpec, KeySpec, TeamSpec, safe_name
from shieldes.secrets import hash_key

_HASH = re.compile(r"^[0-9a-f]{64}$")
_DURATION = re.compile(r"^([1-9][0-9]*)\s*(s|m|h|d|w|mo)$")
# LiteLLM's model names that stand for "every model" (of the proxy, of the key's team)
_ALL_MODELS = ("all-proxy-models", "all-team-models")
# fields the import maps (or that describe the key, not its limits); any other set one is named in a note
_KEY_FIELDS = frozenset((
    "token", "key_name", "key_alias", "models", "max_budget", "budget_duration", "budget_reset_at", "rpm_limit",
    "tpm_limit", "team_id", "expires", "blocked", "spend", "user_id", "created_at", "updated_at", "created_by",
    "updated_by", "last_active", "litellm_budget_table", "team_alias", "key_type", "id", "budget_id"))
_TEAM_FIELDS = frozenset(("team_id", "team_alias", "max_budget", "budget_duration", "budget_reset_at", "spend",
                          "created_at", "updated_at", "blocked", "members_with_roles", "members", "admins",
                          "litellm_budget_table", "organization_id", "model_id", "budget_id"))
# LiteLLM fills these with empty values by default: only a value makes them worth a note
_EMPTY: tuple[object, ...] = (None, "", [], {}, 0, 0.0, False)


def looks_like_litellm_keys(doc: Any) -> bool:
    return isinstance(doc, dict) and "providers" not in doc and "model_list" not in doc and (
        isinstance(doc.get("keys"), list) or isinstance(doc.get("teams"), list))


def parse_litellm_keys(doc: dict[str, Any], spec: ImportSpec) -> None:
    teams = _teams(doc.get("teams") or [], spec)
    keys = doc.get("keys") or []
    if not isinstance(keys, list):
        raise ImportRejected("keys must be the list GET /key/list?return_full_object=true answers")
    blocked: list[str] = []
    unlimited: list[str] = []
    spent: list[str] = []
    names: set[str] = set()
    for i, key in enumerate(keys):
        where = f"keys[{i}]"
        if not isinstance(key, dict):
            raise ImportRejected(f"{where} is {key!r}, not a key object: list the keys with GET "
                                 "/key/list?return_full_object=true (without it LiteLLM answers their hashes only)")
        key_hash = _hash(key.get("token"), where)
        name = _name(key, key_hash, where)
        if name in names:  # LiteLLM lets two keys share an alias; shieldes names are unique
            name = f"{name}-{key_hash[:8]}"
        names.add(name)
        if key.get("blocked") is True:
            blocked.append(name)
            continue
        team = _team(key.get("team_id"), teams, spec, where)
        budget = _budget(key, f"{where} ({name})", unlimited, spec.notes)
        if isinstance(key.get("spend"), int | float) and key["spend"] > 0:
            spent.append(f"{name} ${key['spend']:g}")
        _note_others(key, _KEY_FIELDS, f"{where} ({name})", spec)
        shown = key.get("key_name")  # LiteLLM's abbreviation of the key (sk-...x1Yz)
        token = key.get("token")
        prefix = shown if isinstance(shown, str) and shown else (
            token[:7] if isinstance(token, str) and token.startswith("sk-") else "sk-...")
        spec.keys.append(KeySpec(None, name, _models(key.get("models"), where, spec), team,
                                 _limit(key, "rpm_limit", where), _limit(key, "tpm_limit", where), budget,
                                 _expiry(key.get("expires"), where), False, where, key_hash=key_hash,
                                 prefix=str(prefix)[:24]))
    if blocked:
        spec.notes.append(f"blocked key(s) {', '.join(blocked)} not created: they stop working")
    if unlimited:
        spec.notes.append(f"budgets that LiteLLM never resets ({', '.join(unlimited)}) run over 366d here, the "
                          "longest shieldes budget period; change one with `shieldes budget set`")
    if spent:
        spec.notes.append(f"spend so far ({', '.join(spent)}) is not carried over: budgets here count from the "
                          "import; lower a budget by what was spent (`shieldes budget set`) to keep the same limit")
    if spec.keys:
        spec.notes.append("keys keep their secrets: each is created with the hash LiteLLM stores, so clients keep "
                          "sending the key they have (point them at this gateway's URL)")


def _teams(rows: Any, spec: ImportSpec) -> dict[str, str]:
    """LiteLLM team id -> shieldes team name; each team becomes a TeamSpec with its budget."""
    if not isinstance(rows, list):
        raise ImportRejected("teams must be the list GET /team/list answers")
    out: dict[str, str] = {}
    unlimited: list[str] = []
    for i, team in enumerate(rows):
        where = f"teams[{i}]"
        if not isinstance(team, dict) or not isinstance(team.get("team_id"), str) or not team["team_id"]:
            raise ImportRejected(f"{where} must be a team object with a team_id, as GET /team/list answers")
        alias = team.get("team_alias")
        name = safe_name(alias if isinstance(alias, str) and alias.strip() else team["team_id"])
        out[team["team_id"]] = name
        _note_others(team, _TEAM_FIELDS | {"models", "rpm_limit", "tpm_limit"}, f"{where} ({name})", spec)
        limits = [f for f in ("models", "rpm_limit", "tpm_limit") if team.get(f) not in _EMPTY]
        if limits:
            spec.notes.append(f"{where} ({name}) {', '.join(limits)} not imported: a shieldes team holds a budget; "
                              "give its keys those limits (`shieldes key update KEY --models ... --rpm ... --tpm ...`)")
        spec.teams.append(TeamSpec(name, None, _budget(team, f"{where} ({name})", unlimited, spec.notes), where))
    if unlimited:
        spec.notes.append(f"team budgets that LiteLLM never resets ({', '.join(unlimited)}) run over 366d here")
    return out


def _team(team_id: Any, teams: dict[str, str], spec: ImportSpec, where: str) -> str | None:
    if team_id in (None, ""):
        return None
    if not isinstance(team_id, str):
        raise ImportRejected(f"{where}.team_id must be a team id string, got {team_id!r}")
    if team_id not in teams:  # the file has no teams section: the team is made, named by its id
        teams[team_id] = safe_name(team_id)
        spec.teams.append(TeamSpec(teams[team_id], None, None, where))
        spec.notes.append(f"team {team_id!r} is not in the file's teams (GET /team/list): created without a budget "
                          f"as {teams[team_id]!r}")
    return teams[team_id]


def _hash(token: Any, where: str) -> str:
    """LiteLLM's stored token (sha256 hex of the key) or, given the key itself (sk-...), its hash."""
    if isinstance(token, str) and _HASH.match(token):
        return token
    if isinstance(token, str) and token.startswith("sk-"):
        return hash_key(token)
    raise ImportRejected(f"{where}.token must be the key's hash (64 hex digits) as LiteLLM stores it, got "
                         f"{str(token)[:20]!r}: list the keys with GET /key/list?return_full_object=true")


def _name(key: dict[str, Any], key_hash: str, where: str) -> str:
    alias = key.get("key_alias")
    if alias is not None and not isinstance(alias, str):
        raise ImportRejected(f"{where}.key_alias must be text, got {alias!r}")
    return safe_name(alias) if alias and alias.strip() else f"litellm-{key_hash[:12]}"


def _models(models: Any, where: str, spec: ImportSpec) -> tuple[str, ...] | None:
    if models in (None, []):
        return None
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ImportRejected(f"{where}.models must be a list of model names, got {models!r}")
    if any(m in _ALL_MODELS for m in models):
        if "all-team-models" in models:
            spec.notes.append(f"{where}.models all-team-models: the key may use every model here (a shieldes team "
                              "does not list models); give it --models to keep it to its team's")
        return None
    return tuple(dict.fromkeys(models))


def _limit(key: dict[str, Any], field: str, where: str) -> int | None:
    value = key.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ImportRejected(f"{where}.{field} must be a whole number above 0, got {value!r}")
    return value


def _budget(item: dict[str, Any], where: str, unlimited: list[str], notes: list[str]) -> BudgetSpec | None:
    amount = item.get("max_budget")
    if amount is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
        raise ImportRejected(f"{where}.max_budget must be a number of USD >= 0, got {amount!r}")
    duration = item.get("budget_duration")
    if duration in (None, ""):
        unlimited.append(where)
        return BudgetSpec(float(amount), "366d")
    m = _DURATION.match(str(duration).strip())
    if m is None:
        raise ImportRejected(f"{where}.budget_duration {duration!r} is not a LiteLLM duration (30d, 1mo, ...)")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "mo" and n == 1:
        return BudgetSpec(float(amount), "1mo")
    days = {"d": n, "w": 7 * n, "mo": 30 * n}.get(unit)
    if days is None or days > 366:
        notes.append(f"{where}: budget ${amount:g} per {duration} not imported: shieldes budgets run over Nd "
                     "(1d..366d) or 1mo; set one with `shieldes budget set`")
        return None
    return BudgetSpec(float(amount), f"{days}d")


def _expiry(expires: Any, where: str) -> float | None:
    if expires in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ImportRejected(f"{where}.expires must be an ISO 8601 time or null, got {expires!r}") from None


def _note_others(item: dict[str, Any], handled: frozenset[str], where: str, spec: ImportSpec) -> None:
    others = sorted(str(f) for f, v in item.items() if f not in handled and v not in _EMPTY)
    if others:
        spec.notes.append(f"{where} {', '.join(others)} not imported: a shieldes key has models, rpm/tpm, a budget, "
                          "a team and an expiry (docs/migrating.md#keys-and-teams-from-litellm)")
