"""A LiteLLM config's router and proxy settings (pure): fallbacks, default_fallbacks and
model_group_alias as shieldes aliases, routing_strategy as each model group's strategy,
model_info.access_groups and the rest named in notes."""

from __future__ import annotations

from typing import Any

from shieldes.importers.settings_notes import Found, litellm_strategy, node_notes, settings_notes
from shieldes.importers.spec import AliasSpec, ImportRejected, ImportSpec

# router_settings / litellm_settings the import maps (fallbacks: aliases; routing_strategy: routing)
_HANDLED_SETTINGS = ("fallbacks", "context_window_fallbacks", "default_fallbacks", "routing_strategy", "master_key",
                     "model_group_alias")


def access_groups(entries: list[Any], spec: ImportSpec) -> None:
    """model_info.access_groups: LiteLLM keys list a group's name among their models to reach its
    model_names; shieldes keys list the model names, so each group is said with the names it stands for."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        info = entry.get("model_info") if isinstance(entry, dict) else None
        found = info.get("access_groups") if isinstance(info, dict) else None
        if not isinstance(found, list):
            continue
        public = str(entry.get("model_name") or entry["litellm_params"].get("model"))
        for group in found:
            names = groups.setdefault(str(group), [])
            if public not in names:
                names.append(public)
    for group, names in groups.items():
        spec.notes.append(f"model_info.access_groups {group!r} not imported: a shieldes key lists model names, so give "
                          f"keys that name {group!r} in their models these instead: --models {','.join(names)}")


def group_aliases(doc: dict[str, Any], named: dict[str, list[tuple[str, str, float]]],
                   fallbacks: dict[str, list[str]], spec: ImportSpec) -> list[AliasSpec]:
    """router_settings.model_group_alias {name: model_name, or {model: model_name, hidden}}: a name
    clients use for a model group, an alias with the group's targets and fallbacks."""
    router = doc.get("router_settings")
    groups = router.get("model_group_alias") if isinstance(router, dict) else None
    if groups is None:
        return []
    if not isinstance(groups, dict):
        raise ImportRejected("router_settings.model_group_alias must map a name to a model_name, like "
                             "{\"gpt-4\": \"gpt-4o\"}")
    out = []
    for alias, target in groups.items():
        where = f"router_settings.model_group_alias[{alias!r}]"
        group = target.get("model") if isinstance(target, dict) else target
        if not isinstance(group, str) or group not in named:
            raise ImportRejected(f"{where} names {group!r}, which no model_list entry has as model_name; "
                                 "name one of the file's model_names, or remove it")
        if str(alias) in named:
            raise ImportRejected(f"{where}: {alias!r} is also a model_name of model_list; LiteLLM serves the "
                                 "model_list entry, so remove the alias or rename one")
        if isinstance(target, dict) and target.get("hidden"):
            spec.notes.append(f"{where}.hidden not imported: GET /v1/models lists the alias {alias!r}")
        out.append(AliasSpec(str(alias), tuple(dict.fromkeys(named[group])), tuple(fallbacks.get(group, ())),
                             where))
    return out


def router_settings(doc: dict[str, Any], named: dict[str, list[tuple[str, str, float]]], spec: ImportSpec,
              found: Found) -> None:
    """The file's settings: routing_strategy as the strategy of each model group, the rest named in notes."""
    router = doc.get("router_settings")
    if isinstance(router, dict) and router.get("routing_strategy") is not None:
        strategy, note = litellm_strategy(router["routing_strategy"])
        if note:
            spec.notes.append(note)
        # a strategy orders a name's deployments: it matters where several serve one name
        spec.routing.extend((public, strategy) for public, entries in named.items()
                            if strategy and len(entries) > 1)
    for section in ("router_settings", "litellm_settings", "general_settings"):
        settings = doc.get(section)
        if isinstance(settings, dict):
            spec.notes.extend(settings_notes(section, settings, found, _HANDLED_SETTINGS))
    spec.notes.extend(node_notes(found))
    general = doc.get("general_settings")
    if isinstance(general, dict) and general.get("master_key"):
        spec.notes.append("general_settings.master_key: clients use shieldes virtual keys (`shieldes key create`); "
                          "the admin API takes SHIELDES_ADMIN_TOKEN or admin tokens (docs/admin-api.md)")
    env = doc.get("environment_variables")
    if isinstance(env, dict) and env:
        spec.notes.append(f"environment_variables {', '.join(sorted(map(str, env)))} not imported: set the ones "
                          "the providers read (api keys) in every node's environment")
    other = sorted(set(doc) - {"model_list", "router_settings", "litellm_settings", "general_settings",
                               "environment_variables"})
    if other:
        spec.notes.append(f"{', '.join(map(str, other))} not imported: shieldes has no such section")


def fallbacks_of(doc: dict[str, Any]) -> dict[str, list[str]]:
    """model_name -> fallback model_names in order, from `fallbacks` then `context_window_fallbacks`
    (shieldes falls back on both exhaustion and too-long prompts, so the two lists are merged)."""
    out: dict[str, list[str]] = {}
    for section in ("router_settings", "litellm_settings"):
        settings = doc.get(section)
        if not isinstance(settings, dict):
            continue
        for key in ("fallbacks", "context_window_fallbacks"):
            rules = settings.get(key) or []
            if not isinstance(rules, list):
                raise ImportRejected(f"{section}.{key} must be a list like [{{\"gpt-4o\": [\"claude\"]}}]")
            for rule in rules:
                if not isinstance(rule, dict):
                    raise ImportRejected(f"{section}.{key} entries must map a model_name to a list of names")
                for public, names in rule.items():
                    names = [names] if isinstance(names, str) else names
                    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                        raise ImportRejected(f"{section}.{key}[{public!r}] must be a list of model_names")
                    chain = out.setdefault(str(public), [])
                    chain.extend(n for n in names if n not in chain and n != public)
    return out


def default_fallbacks(doc: dict[str, Any]) -> list[str]:
    """`default_fallbacks` (litellm_settings or router_settings): model_names, in order."""
    for section in ("router_settings", "litellm_settings"):
        settings = doc.get(section)
        names = settings.get("default_fallbacks") if isinstance(settings, dict) else None
        if names is None:
            continue
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ImportRejected(f"{section}.default_fallbacks must be a list of model_names, like [\"claude-haiku\"]")
        return list(dict.fromkeys(names))
    return []
