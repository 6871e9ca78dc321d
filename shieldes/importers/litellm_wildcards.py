"""LiteLLM wildcard routes (`model_name: claude-*` to `anthropic/claude-*`, `anthropic/*` to
`anthropic/*`) as shieldes model patterns (pure), and what a pattern serves beyond what LiteLLM did."""

from __future__ import annotations

from shieldes.importers.litellm_deployments import Group
from shieldes.importers.spec import ImportRejected, ImportSpec


def wildcard(public: str, prefix: str, upstream: str, ref: str, where: str) -> bool:
    """A LiteLLM wildcard route as a shieldes pattern (the upstream part, which serves a name as the
    client sent it): True when clients name it `PREFIX/NAME` (model_name `anthropic/*`, model
    `anthropic/*`), False when they send the name itself (model_name `claude-*`, model
    `anthropic/claude-*`; `*` with `openai/*`). Forms shieldes cannot express are refused."""
    if "/" not in ref:
        raise ImportRejected(
            f"{where} is a wildcard route ({ref}) naming no provider (LiteLLM picks one per request from the "
            "name), which shieldes cannot express: write one entry per provider, e.g. model_name \"claude-*\" "
            "with model \"anthropic/claude-*\", or model_name \"*\" with model \"openai/*\"")
    if upstream.count("*") != 1 or not upstream.endswith("*"):
        raise ImportRejected(
            f"{where} is a wildcard route ({ref}) with a '*' that does not end the name: a shieldes pattern "
            "has one '*', at the end (claude-*, or * alone); rewrite it so, or leave it out and list the names")
    if public == upstream:
        return False
    if public == f"{prefix}/{upstream}":
        return True
    raise ImportRejected(
        f"{where} is a wildcard route from model_name {public!r} to {ref}, which renames what it matches; "
        "shieldes sends a name a pattern matches upstream as the client asked it, so give both the same "
        f"pattern (model_name {upstream!r} or {prefix + '/' + upstream!r} with model {ref!r}), or list the names "
        "and import again (each becomes a model alias)")


def add_pattern(groups: dict[Group, list[str]], origins: dict[Group, str], pinnings: list[tuple[Group, str, str]],
                 group: Group, pattern: str, pinned: bool, where: str) -> None:
    """A wildcard entry: its pattern joins the provider's models; no alias (a pattern is no name)."""
    models = groups.setdefault(group, [])
    origins.setdefault(group, where)
    if pattern not in models:
        models.append(pattern)
    if pinned:
        pinnings.append((group, pattern, where))


def check_pinning(group: Group, name: str, pattern: str, where: str, spec: ImportSpec) -> None:
    """`PREFIX/NAME` reaches the provider named PREFIX or those of kind PREFIX (docs/routing.md);
    a wildcard route clients name that way must land on one of them."""
    prefix, kind = group[0], group[1]
    if name != prefix and kind != prefix:
        raise ImportRejected(
            f"{where} is a wildcard route clients reach as {prefix}/NAME, but its provider is named {name!r} "
            f"(other {prefix} entries use another endpoint, key or weight and took the name {prefix!r}); "
            f"shieldes picks a provider by `{prefix}/` only when it is named so: give the {prefix} entries the same "
            f"api_base, api_key and weight, or use model_name {pattern!r} (clients then send NAME)")
    spec.notes.append(f"{where}: clients asking {prefix}/NAME reach provider {name!r} through its pattern "
                      f"{pattern!r} as in LiteLLM; a bare NAME it matches that no provider lists exactly reaches "
                      "it too (docs/routing.md#model-patterns)")


def overlaps(groups: dict[Group, list[str]], names: dict[Group, str], pinnings: list[tuple[Group, str, str]],
              spec: ImportSpec) -> None:
    """A route clients reach as PREFIX/NAME gives its provider a pattern, which serves bare names too:
    where the file also routes bare names by a pattern (`*` to openai/*), those names would be shared
    with the pinned providers, which LiteLLM never sends them to. Said, with what to do instead."""
    pinned = {(names[g], p) for g, p, _ in pinnings}
    bare = [(names[g], m) for g, models in groups.items() for m in models
            if m.endswith("*") and (names[g], m) not in pinned]
    for name, pattern in bare:
        shared = sorted({n for n, p in pinned if n != name and (p.startswith(pattern[:-1]) or
                                                                 pattern.startswith(p[:-1]))})
        if shared:
            spec.notes.append(
                f"bare names matching {pattern!r} (provider {name!r}) are shared with {', '.join(shared)}, whose "
                "PREFIX/* routes serve them through the same pattern; LiteLLM sends them to "
                f"{name!r} only. Narrow those providers to their own model families (`shieldes provider update "
                f"{shared[0]} --models 'FAMILY-*'`, e.g. claude-* for Anthropic) or list the names; "
                "docs/routing.md#model-patterns")
