"""How config entities are shown to people and tools (CLI tables, `--json`, the admin API): pure
functions of the state. Secrets never appear: key and token hashes are left out, a provider key
shows only as its `env:VAR` reference or as "encrypted"."""

from __future__ import annotations

import heapq
import time
from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from shieldes.projections.keytable import key_ids_in_teams, keys_with, names_in_order, names_matching
from shieldes.projections.state import (
    AdminToken,
    ConfigState,
    Deployment,
    McpServer,
    ModelAlias,
    OidcSession,
    Team,
    VirtualKey,
    is_model_pattern,
    pattern_matches,
)


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts is not None else None


def secret_label(ref: str | None) -> str | None:
    """What a listing may show of a stored provider key: the env reference, or only that it is encrypted."""
    if ref is None:
        return None
    if ref.startswith("env:"):
        return ref
    return "encrypted"


def provider_row(d: Deployment) -> dict[str, Any]:
    return {
        "name": d.name,
        "type": d.kind,
        "base_url": d.base_url,
        "models": list(d.models),
        "weight": d.weight,
        "api_key": secret_label(d.secret_ref),
        "responses": d.responses,
        "options": dict(sorted(d.options.items())),  # one order whether applied here or read back (jsonb)
    }


def mcp_server_row(m: McpServer) -> dict[str, Any]:
    """A registered MCP server as listings show it: header values never, only where they come from."""
    return {"name": m.name, "url": m.url, "route": f"/mcp/{m.name}",
            "headers": {h: secret_label(ref) for h, ref in sorted(m.headers.items())}}


def routing_rows(state: ConfigState, default: str) -> list[dict[str, Any]]:
    """Every served model and alias with its routing strategy (`source`: set here, or the default).
    Patterns (`claude-*`) are not models: a strategy cannot be set for one, so none is listed."""
    names = sorted({m for d in state.providers.values() for m in d.models if not is_model_pattern(m)}
                   | set(state.aliases))
    return [{"model": n, "strategy": state.routing.get(n, default),
             "source": "set" if n in state.routing else "default"} for n in names]


def alias_row(alias: ModelAlias) -> dict[str, Any]:
    return {
        "name": alias.name,
        "targets": [{"provider": t.provider, "model": t.model, "weight": t.weight} for t in alias.targets],
        "fallbacks": list(alias.fallbacks),
    }


def rotation_warnings(key: VirtualKey, now: float) -> list[str]:
    """A rotated key that has expired: its new secret is refused like the old one until the expiry
    is moved (a rotation changes the secret, not the expiry), so the rotation says so."""
    if key.expires_at is None or key.expires_at > now:
        return []
    at = datetime.fromtimestamp(key.expires_at, UTC)
    return [f"key {key.name!r} expired at {at:%Y-%m-%dT%H:%M:%SZ}: its new secret is refused (401) until the "
            f"expiry is extended (`shieldes key update {key.name} --expires-in 30d`, or --no-expiry)"]


def key_status(key: VirtualKey, now: float) -> str:
    if key.revoked:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _few_candidates(state: ConfigState, statuses: Collection[str] | None,
                    team_id: str | None) -> list[VirtualKey] | None:
    """The keys a filter can match when a column names them (None: any key can): a team's keys
    (its team column), or for revoked or expired keys only the keys that have that field set."""
    if team_id is not None:
        return [state.keys[i] for i in key_ids_in_teams(state.keys, {team_id})]
    if statuses is not None and "active" not in statuses:
        fields = [f for status, f in (("revoked", "revoked"), ("expired", "expires_at")) if status in statuses]
        found = {k.id: k for f in fields for k in keys_with(state.keys, f)}
        return list(found.values())
    return None


def listed_keys(state: ConfigState, now: float, *, statuses: Collection[str] | None = None, team_id: str | None = None,
                search: str = "", after: str | None = None) -> Iterator[VirtualKey]:
    """The keys a listing shows, by name, produced as they are read (a page of a million keys
    reads only as far as it goes): those named above `after`, with one of `statuses` (None: any),
    of team `team_id`, whose name holds `search` in any case. `key list` and GET /admin/v1/keys."""
    search = search.lower()
    ordered: Iterable[VirtualKey]
    few = _few_candidates(state, statuses, team_id)
    if few is not None and len(state.key_ids_by_name) == len(state.keys):
        # a team's keys, or the revoked or expired ones: found from their column alone, then read
        # (every key was read to find a team's 50: 11 s at a million keys)
        ordered = sorted(few, key=lambda k: k.name)
    elif len(state.key_ids_by_name) == len(state.keys):  # one name per key: walk the names in order
        # only the names that hold `search` are read (found in one text of the names: milliseconds
        # at a million keys, keytable.names_matching), then their keys (materialised from the columns)
        names = names_matching(state.key_ids_by_name, search, after) if search else \
            names_in_order(state.key_ids_by_name, after)
        ordered = (state.keys[state.key_ids_by_name[n]] for n in names)
    else:
        ordered = sorted(state.keys.values(), key=lambda k: k.name)
    for key in ordered:
        if (after is not None and key.name <= after) or (search and search not in key.name.lower()):
            continue
        if (team_id is not None and key.team_id != team_id) or (statuses is not None
                                                                 and key_status(key, now) not in statuses):
            continue
        yield key


BUDGET_KINDS = ("key", "team")  # the order of a budget listing: every key's budget, then every team's


def budgeted(state: ConfigState, after: tuple[str, str] | None = None,
             limit: int | None = None) -> tuple[list[VirtualKey | Team], bool]:
    """The subjects of GET /admin/v1/budgets: the unrevoked keys with a budget by name, then the teams
    with one by name; those past `after` (kind, name), at most `limit` of them (None: all), and
    whether more follow. Only the budgeted keys are read, and a page keeps the `limit` first names
    of them (not a sort of every budget)."""
    start = BUDGET_KINDS.index(after[0]) if after else 0
    subjects: list[VirtualKey | Team] = []
    for kind in BUDGET_KINDS[start:]:
        above = after[1] if after and kind == after[0] else None
        found: Iterable[VirtualKey | Team]
        if kind == "key":
            found = (k for k in keys_with(state.keys, "budget") if k.budget is not None and not k.revoked)
        else:
            found = (t for t in state.teams.values() if t.budget is not None)
        found = (s for s in found if above is None or s.name > above)
        want = None if limit is None else limit + 1 - len(subjects)  # one more says whether there is a next page
        subjects += sorted(found, key=lambda s: s.name) if want is None else \
            heapq.nsmallest(want, found, key=lambda s: s.name)
        if limit is not None and len(subjects) > limit:
            return subjects[:limit], True
    return subjects, False


def key_row(state: ConfigState, key: VirtualKey, now: float) -> dict[str, Any]:
    team = state.teams.get(key.team_id) if key.team_id else None
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "status": key_status(key, now),
        "team": team.name if team else None,
        "models": list(key.models) if key.models is not None else None,  # None: every model
        "rpm": key.rpm,
        "tpm": key.tpm,
        "budget_usd": key.budget.amount_usd if key.budget else None,
        "budget_period": key.budget.period if key.budget else None,
        "expires_at": iso(key.expires_at),
        "mcp": list(state.mcp_access.get(key.id, ())),  # MCP servers/tools it may use; []: none
    }


def team_row(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "budget_usd": team.budget.amount_usd if team.budget else None,
        "budget_period": team.budget.period if team.budget else None,
    }


def token_row(t: AdminToken, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    status = "revoked" if t.revoked else "active" if t.usable(now) else "expired"
    return {"id": t.id, "name": t.name, "role": t.role, "prefix": t.prefix, "status": status,
            "expires_at": iso(t.expires_at)}


def session_row(session: OidcSession, now: float) -> dict[str, Any]:
    """A console session as the API and the CLI show it (never its token: none is stored)."""
    return {"id": session.id, "user": session.user, "role": session.role, "status": session.status(now),
            "started_at": iso(session.started_at), "expires_at": iso(session.expires_at),
            "ended_at": iso(session.ended_at)}


def sessions_of(state: ConfigState, now: float, *, user: str | None = None,
                every: bool = False) -> list[dict[str, Any]]:
    """Console sessions, newest first: the running ones, or with `every` those ended or expired
    too (as long as the node still holds them); `user` keeps one user's."""
    ordered = sorted(state.oidc_sessions.values(), key=lambda s: (-s.started_at, s.id))
    return [session_row(s, now) for s in ordered
            if (user is None or s.user == user) and (every or s.status(now) == "active")]


def unserved_warnings(state: ConfigState, models: tuple[str, ...] | None) -> list[str]:
    """Allowed models no provider serves yet: not an error (keys may come first), but said. A model
    alias is served (by its targets), and so is a pattern that names one."""
    served = set(state.all_models()) | set(state.aliases)
    deps = tuple(state.providers.values())
    return [
        f"no provider serves model {m!r} yet: requests for it get 404 until a provider lists it "
        f"(`shieldes provider add ... --models {m}` or `shieldes provider update NAME --models ...`)"
        for m in models or () if m not in served and not _reachable(deps, m)
        and not (is_model_pattern(m) and any(pattern_matches(m, a) for a in state.aliases))
    ]


def providers_left_out(state: ConfigState, name: str, targets: Collection[str]) -> list[str]:
    """Providers that serve the model `name` and are not among `targets`: an alias of that name
    takes its requests from them (`model alias` says so, `config import` refuses it)."""
    return sorted(d.name for d in state.providers.values() if name in d.models and d.name not in targets)


def takeover_warnings(state: ConfigState, alias: ModelAlias) -> list[str]:
    """An alias wins over plain routing of the model of its name: providers that serve that name
    and are not among its targets stop getting its requests. Allowed (it is how a name moves to
    other deployments), but said, as `config import` refuses it for the same reason."""
    left_out = providers_left_out(state, alias.name, {t.provider for t in alias.targets if t.model == alias.name})
    if not left_out:
        return []
    add = " ".join(f"--target {p}/{alias.name}" for p in left_out)
    return [f"alias {alias.name!r} takes the requests for model {alias.name!r} away from provider(s) "
            f"{', '.join(left_out)}, which serve it and are not among its targets (an alias wins over the "
            f"providers serving its name); add {add} if they should keep serving it"]


def _reachable(deps: tuple[Deployment, ...], allowed: str) -> bool:
    """Some deployment serves `allowed`: by one of its patterns, or (for a pattern the key is
    allowed) by a name or pattern inside it."""
    if not is_model_pattern(allowed):
        return any(d.serves(allowed) for d in deps)
    return any(pattern_matches(allowed, m) or (is_model_pattern(m) and pattern_matches(m, allowed[:-1]))
               for d in deps for m in d.models)


def unpriced_for_key(state: ConfigState, key: VirtualKey) -> list[str]:
    """Models `key` may use that have no price, when a budget (its own or its team's) applies to
    it: requests for them would be refused (403 model_not_priced). Empty without a budget. An alias
    the key may use is priced as its targets' models (the name the route bills), so those count."""
    team = state.teams.get(key.team_id) if key.team_id else None
    if key.budget is None and (team is None or team.budget is None):
        return []
    return sorted({billed for asked, billed in _unpriced_served(state) if key.allows_model(asked)})


# the most keys of a team a team budget's write reads for the models they may use (the team column
# finds them; each read is a key materialised, a revoked one too): past it, the warning names what
# those keys allow: `budget set`'s answer waits on that many reads at most, however large the team
TEAM_KEYS_READ = 10_000


def unpriced_for_team(state: ConfigState, team: Team, most: int = TEAM_KEYS_READ) -> list[str]:
    """Models the keys of `team` may use that have no price, when the team has a budget: as
    unpriced_for_key, for the team's unrevoked keys. Served models without a price are found first
    (usually none: no key is read); then up to `most` keys, found by the team column."""
    if team.budget is None:
        return []
    served = _unpriced_served(state)
    if not served:
        return []
    every = {billed for _, billed in served}
    found: set[str] = set()
    read = 0
    for key_id in key_ids_in_teams(state.keys, {team.id}):
        if read >= most:
            break
        read += 1
        key = state.keys.get(key_id)
        if key is None or key.revoked:
            continue
        if key.models is None:  # every model
            return sorted(every)
        found |= {billed for asked, billed in served if key.allows_model(asked)}
        if found == every:
            break
    return sorted(found)


def budget_unpriced(state: ConfigState, kind: str, subject_id: str) -> list[str]:
    """The models a budget just set on a key or a team (`kind`) refuses for want of a price."""
    if kind == "team":
        return unpriced_for_team(state, state.teams[subject_id])
    return unpriced_for_key(state, state.keys[subject_id])


def _unpriced_served(state: ConfigState) -> list[tuple[str, str]]:
    """(the name a key asks for, the model billed) for each served model with no price: the models
    deployments list by name, and each alias's targets' models under the alias's name."""
    from shieldes.usage.pricing import unpriced  # the shipped price table: only a budget needs it

    pairs = [(m, m) for m in state.exact_models()]
    pairs += [(a.name, t.model) for a in state.aliases.values() for t in a.targets]
    missing = set(unpriced(state.pricing, [billed for _, billed in pairs]))
    return [(asked, billed) for asked, billed in pairs if billed in missing]
