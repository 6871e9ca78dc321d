"""What only a shieldes export carries: routing strategies, teams and virtual keys -> commands and
changes (pure, but for a fresh team id when the file's cannot be kept).

- Routing strategies and teams are added or updated to what the file says (a team is matched by
  name; a new team keeps the file's id when it is free here, so a restore keeps ids).
- A key the source gives the stored hash of (LiteLLM's keys) is created with it, so its secret works
  here; one here with that hash takes the file's settings, like a key of a shieldes export.
- A key holds a secret the export never has, so none is created. A key present here (by id, else
  by name) takes the file's models, team, limits, budget, expiry and MCP access (a version 1 file
  says nothing of MCP: the key keeps its access). A missing one is reported as
  `missing` with the `shieldes key create` command that makes it (a new id and a new secret).
  Import revokes nothing and brings back no revoked key; either difference is said in a note.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from datetime import UTC, datetime

from shieldes.importers.plan import Change, Plan
from shieldes.importers.spec import BudgetSpec, ImportRejected, ImportSpec, KeySpec
from shieldes.projections.commands import UNSET, CreateKey, CreateTeam, SetBudget, UpdateKey
from shieldes.projections.shared_commands import SetRouting
from shieldes.projections.state import Budget, ConfigState, VirtualKey
from shieldes.secrets import new_id

_TEAM_ID = re.compile(r"team_[0-9a-f]{8,64}")


def plan_entities(plan: Plan, state: ConfigState, spec: ImportSpec) -> None:
    for model, strategy in spec.routing:
        old = state.routing.get(model)
        if old == strategy:
            plan.changes.append(Change("routing", model, "unchanged", strategy))
            continue
        plan.commands.append(SetRouting(model, strategy))
        plan.changes.append(Change("routing", model, "add" if old is None else "update",
                                   strategy if old is None else f"{strategy} (was {old})"))
    for team in spec.teams:
        team_id = state.team_ids_by_name.get(team.name)
        if team_id is None:
            keep = team.id is not None and _TEAM_ID.fullmatch(team.id) and team.id not in state.teams
            amount, period = _money(team.budget)
            plan.commands.append(CreateTeam(team.id if keep and team.id else new_id("team"), team.name, amount, period))
            plan.changes.append(Change("team", team.name, "add", _describe_budget(team.budget)))
            continue
        was = state.teams[team_id].budget
        if _same(was, team.budget):
            plan.changes.append(Change("team", team.name, "unchanged", _describe_budget(team.budget)))
            continue
        plan.commands.append(SetBudget("team", team_id, *_money(team.budget)))
        plan.changes.append(Change("team", team.name, "update",
                                   f"{_describe_budget(team.budget)} (was {_describe_old(was)})"))
    gone = 0
    for key in spec.keys:
        found = _find(state, key) if key.key_hash is None else _by_secret(state, key)
        if found is None:
            if key.revoked:
                gone += 1
            elif key.key_hash is not None:
                _create_with_secret(plan, state, spec, key)
            else:
                if key.mcp:  # the command must run: without entries naming no server
                    key = replace(key, mcp=_registered(plan, state, spec, key))
                plan.changes.append(Change("key", key.name, "missing", f"create it: {create_command(key)}"))
            continue
        _plan_key(plan, state, spec, found, key)
    if gone:
        plan.notes.append(f"{gone} revoked key(s) of the file are not here: a revoked key is not created again")


def _by_secret(state: ConfigState, key: KeySpec) -> VirtualKey | None:
    """The key here with the file's secret (its hash): it takes the file's settings. A key here of
    that name with another secret is another key, never changed by the import."""
    found = state.key_ids_by_hash.get(key.key_hash or "")
    if found is not None:
        return state.keys[found]
    other = state.key_ids_by_name.get(key.name)
    if other is not None:
        raise ImportRejected(f"{key.origin} ({key.name!r}) has another secret than the key named so here; rename one "
                             f"(`key_alias` in the file) and import again")
    return None


def _create_with_secret(plan: Plan, state: ConfigState, spec: ImportSpec, key: KeySpec) -> None:
    """A key whose stored hash the source gives (LiteLLM's): created with it, so its secret works here."""
    if key.mcp:
        key = replace(key, mcp=_registered(plan, state, spec, key))
    amount, period = _money(key.budget)
    plan.commands.append(CreateKey(new_id("key"), key.name, key.key_hash or "", key.prefix or "", key.models, key.rpm,
                                   key.tpm, amount, period, key.team, key.expires_at, key.mcp))
    plan.changes.append(Change("key", key.name, "add", f"{_describe_key(key)} (its secret kept: {key.prefix})"))


def _find(state: ConfigState, key: KeySpec) -> VirtualKey | None:
    if key.id is not None and key.id in state.keys:
        return state.keys[key.id]
    key_id = state.key_ids_by_name.get(key.name)
    return state.keys.get(key_id) if key_id is not None else None


def _registered(plan: Plan, state: ConfigState, spec: ImportSpec, key: KeySpec) -> tuple[str, ...] | None:
    """The key's MCP entries that name a server registered here or in the file. An entry naming
    neither (its server was removed where the file was written: it allowed nothing) is left out,
    with a note, since `key update --mcp` refuses an entry that names no server."""
    servers = set(state.mcp_servers) | {m.name for m in spec.mcp_servers}
    kept: list[str] = []
    dropped: list[str] = []
    for entry in key.mcp or ():
        (kept if entry == "*" or entry.partition("/")[0] in servers else dropped).append(entry)
    if dropped:
        one = len(dropped) == 1
        what = f"MCP entr{'y' if one else 'ies'} {', '.join(dropped)} name{'s' if one else ''}"
        plan.notes.append(f"key {key.name!r}: {what} no MCP server (not in the file's mcp_servers, not "
                          "registered here): left out (allowing nothing); register the server and "
                          "`shieldes key update ... --mcp` if it should be there")
    return tuple(kept) or None


def _plan_key(plan: Plan, state: ConfigState, spec: ImportSpec, old: VirtualKey, key: KeySpec) -> None:
    if old.revoked or key.revoked:
        if old.revoked and not key.revoked:
            plan.notes.append(f"key {old.name!r} is revoked here and active in the file: import brings back no "
                              f"revoked key; make a new one: {create_command(key, name=key.name + '-2')}")
        elif key.revoked and not old.revoked:
            plan.notes.append(f"key {old.name!r} is revoked in the file and active here: import revokes nothing; "
                              f"run `shieldes key revoke {shlex.quote(old.name)}` if it should be")
        plan.changes.append(Change("key", old.name, "unchanged", "revoked" if old.revoked else _describe_key(key)))
        return
    team = state.teams[old.team_id].name if old.team_id and old.team_id in state.teams else None
    diffs = []
    pairs: tuple[tuple[str, object, object], ...] = (
        ("models", old.models, key.models), ("team", team, key.team), ("rpm", old.rpm, key.rpm),
        ("tpm", old.tpm, key.tpm), ("expires_at", old.expires_at, key.expires_at))
    mcp = None
    if not key.keeps_mcp:
        was_mcp = state.mcp_access.get(old.id) or None
        mcp = key.mcp if key.mcp == was_mcp else _registered(plan, state, spec, key)
        pairs += (("mcp", was_mcp, mcp),)
    for what, was, now in pairs:
        if was != now:
            diffs.append(f"{what} {_show(was)} -> {_show(now)}")
    if diffs:
        changed = {what for what, was, now in pairs if was != now}
        plan.commands.append(UpdateKey(
            old.id,
            models=key.models if "models" in changed else UNSET,
            rpm=key.rpm if "rpm" in changed else UNSET,
            tpm=key.tpm if "tpm" in changed else UNSET,
            team=key.team if "team" in changed else UNSET,
            expires_at=key.expires_at if "expires_at" in changed else UNSET,
            mcp=mcp if "mcp" in changed else UNSET,
        ))
    if not _same(old.budget, key.budget):
        new = None if key.budget is None else Budget(key.budget.amount_usd, key.budget.period)
        diffs.append(f"budget {_describe_old(old.budget)} -> {_describe_old(new)}")
        plan.commands.append(SetBudget("key", old.id, *_money(key.budget)))
    if not diffs:
        plan.changes.append(Change("key", old.name, "unchanged", _describe_key(key)))
        return
    plan.changes.append(Change("key", old.name, "update", "; ".join(diffs)))


def create_command(key: KeySpec, *, name: str | None = None) -> str:
    """The `shieldes key create` that makes `key` as the file has it (a new id and a new secret)."""
    args = ["shieldes", "key", "create", "--name", name or key.name]
    if key.models is not None:
        args += ["--models", ",".join(key.models)]
    if key.rpm is not None:
        args += ["--rpm", str(key.rpm)]
    if key.tpm is not None:
        args += ["--tpm", str(key.tpm)]
    if key.budget is not None:
        args += ["--budget", _num(key.budget.amount_usd), "--budget-period", key.budget.period]
    if key.team is not None:
        args += ["--team", key.team]
    if key.expires_at is not None:
        args += ["--expires-at", _iso(key.expires_at)]
    if key.mcp:
        args += ["--mcp", ",".join(key.mcp)]
    return " ".join(shlex.quote(a) for a in args)


def _iso(ts: float) -> str:
    at = datetime.fromtimestamp(ts, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{at.microsecond // 1000:03d}" if at.microsecond else "") + "Z"


def _num(x: float) -> str:
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _same(old: Budget | None, new: BudgetSpec | None) -> bool:
    if old is None or new is None:
        return old is None and new is None
    return (old.amount_usd, old.period) == (new.amount_usd, new.period)


def _money(budget: BudgetSpec | None) -> tuple[float | None, str]:
    return (None, "30d") if budget is None else (budget.amount_usd, budget.period)


def _describe_budget(budget: BudgetSpec | None) -> str:
    return "no budget" if budget is None else f"budget ${_num(budget.amount_usd)}/{budget.period}"


def _describe_old(budget: Budget | None) -> str:
    return "none" if budget is None else f"${_num(budget.amount_usd)}/{budget.period}"


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(value) if value else "none"
    if isinstance(value, float):
        return _iso(value)
    return str(value)


def _describe_key(key: KeySpec) -> str:
    parts = [f"models={','.join(key.models) if key.models is not None else 'all'}"]
    parts += [f"{what}={value}" for what, value in (("team", key.team), ("rpm", key.rpm), ("tpm", key.tpm))
              if value is not None]
    if key.budget is not None:
        parts.append(_describe_budget(key.budget))
    if key.mcp:
        parts.append(f"mcp={','.join(key.mcp)}")
    return " ".join(parts)
