"""ImportSpec + current config -> the commands that make the config match, and what each changes.

Import is additive: providers, aliases and prices in the file are added or updated; anything else
already in shieldes is left alone, and so are the models a provider serves that the file leaves out
(the file's models are added to them). From Bifrost or LiteLLM, an existing provider of the same name
keeps its endpoint, key and settings: one the file would repoint is refused. A shieldes export says
each provider whole, so there the file's endpoint, key and settings are applied as `shieldes provider
update` applies them. A provider's type never changes in place. A second import of the same file
changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from shieldes.errors import CommandRejected
from shieldes.importers.spec import AliasSpec, ImportRejected, ImportSpec, PriceSpec, ProviderSpec
from shieldes.projections.commands import UNSET, Command
from shieldes.projections.shared_commands import AddProvider, SetModelAlias, SetPricing, UpdateProvider
from shieldes.projections.state import AliasTarget, ConfigState, Deployment, Price
from shieldes.providers.kinds import COUNT_OPTIONS
from shieldes.secrets import SecretError, encrypt_secret, env_ref, resolve_secret
from shieldes.usage.catalog import shipped
from shieldes.views import providers_left_out


@dataclass(frozen=True)
class Change:
    kind: str  # "provider" | "alias" | "pricing" | "routing" | "team" | "key" | "mcp_server"
    name: str
    action: str  # "add" | "update" | "unchanged" | "missing" (a key to create by hand: entities.py)
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "action": self.action, "detail": self.detail}


@dataclass
class Plan:
    commands: list[Command] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the config here makes worth saying

    def counts(self) -> dict[str, int]:
        """add/update/unchanged, and `missing` when there are keys to create by hand."""
        out = {"add": 0, "update": 0, "unchanged": 0}
        for c in self.changes:
            out[c.action] = out.get(c.action, 0) + 1
        return out


def plan_import(state: ConfigState, spec: ImportSpec, encryption_key: str | None) -> Plan:
    _check_unique(spec)
    plan = Plan()
    for p in spec.providers:
        old = state.providers.get(p.name)
        secret_ref = _secret_ref(p, old, encryption_key, updates=spec.updates_providers)
        if old is None:
            plan.commands.append(AddProvider(p.name, p.kind, p.base_url, secret_ref, p.models, p.weight,
                                             responses=p.responses or "translate", options=dict(p.options)))
            plan.changes.append(Change("provider", p.name, "add", _describe(p)))
            continue
        _provider_change(plan, old, p, secret_ref, updates=spec.updates_providers)
    changed: list[AliasSpec] = []
    for given in spec.aliases:
        targets = tuple(AliasTarget(*t) for t in given.targets)
        alias = state.aliases.get(given.name)
        if alias is None:
            _check_takeover(state, given)
        chain = given.fallbacks  # None: the format has no fallbacks, so the alias keeps its own
        if chain is None:
            chain = alias.fallbacks if alias is not None else ()
        a = replace(given, fallbacks=chain)
        detail = _describe_alias(targets, chain)
        if alias is not None and (_as_set(alias.targets), alias.fallbacks) == (_as_set(targets), chain):
            plan.changes.append(Change("alias", a.name, "unchanged", detail))
            continue
        changed.append(a)
        if alias is not None:
            detail += f" (was {_describe_alias(alias.targets, alias.fallbacks)})"
        plan.changes.append(Change("alias", a.name, "add" if alias is None else "update", detail))
    plan.commands.extend(_alias_commands(changed, set(state.aliases)))
    for price in spec.prices:
        (exact_price_change if spec.exact_prices else price_change)(plan, state, price)
    if spec.mcp_servers:  # before the keys, whose MCP access names them
        from shieldes.importers.mcp_servers import plan_mcp_servers

        plan_mcp_servers(plan, state, spec, encryption_key)
    if spec.routing or spec.teams or spec.keys:
        from shieldes.importers.entities import plan_entities  # the shieldes format's own sections

        plan_entities(plan, state, spec)
    return plan


def _provider_change(plan: Plan, old: Deployment, p: ProviderSpec, secret_ref: str | None, *,
                     updates: bool) -> None:
    """Plan the file's entry for an existing provider. `updates` (the shieldes format): its endpoint,
    key and settings become the file's, in the one `provider update` event; else they must match.
    Either way its type never changes in place, and the models it serves that the file leaves out
    stay (an import is additive)."""
    if old.kind != p.kind:
        raise ImportRejected(
            f"{p.origin} makes provider {p.name!r} type {p.kind}, but it exists here with type {old.kind} and a "
            f"provider's type cannot change in place; give the entry another name (and point aliases at it), or "
            f"remove the provider first (`shieldes provider remove {p.name}`) and import again"
        )
    options = dict(p.options)
    if not updates:  # quotas are limits, not the endpoint: the file's are set, the ones it leaves out kept
        options = {**{k: v for k, v in old.options.items() if k in COUNT_OPTIONS}, **options}
    repoint = old.base_url != p.base_url or old.secret_ref != secret_ref or _endpoint(old.options) != _endpoint(options)
    if repoint and not updates:
        raise ImportRejected(
            f"provider {p.name!r} already exists at {old.base_url} (key {_redact(old.secret_ref)}"
            f"{_opts(old.options)}) but {p.origin} has {p.base_url} (key {_redact(secret_ref)}"
            f"{_opts(options)}); importing would repoint it. Remove it "
            f"first (`shieldes provider remove {p.name}`) or change the entry in the file, and import again"
        )
    if repoint:
        _check_endpoint_follows(old, p)
    diffs = []
    if old.base_url != p.base_url:
        diffs.append(f"base_url {old.base_url} -> {p.base_url}")
    if old.secret_ref != secret_ref:
        diffs.append(f"key {_redact(old.secret_ref)} -> {_redact(secret_ref)}")
    for name in sorted(set(old.options) | set(options)):
        if old.options.get(name) != options.get(name):
            diffs.append(f"{name} {old.options.get(name, '(none)')} -> {options.get(name, '(none)')}")
    added = tuple(m for m in p.models if m not in old.models)
    if added:
        diffs.append(f"models {','.join(old.models)} + {','.join(added)} (existing models kept)")
    if old.weight != p.weight:
        diffs.append(f"weight {old.weight:g} -> {p.weight:g}")
    responses = p.responses if p.responses not in (None, old.responses) else None
    if responses is not None:
        diffs.append(f"responses {old.responses} -> {responses}")
    kept = [m for m in old.models if m not in p.models]
    if kept and updates:
        plan.notes.append(
            f"provider {p.name!r} also serves {', '.join(kept)}, which {p.origin} leaves out: kept (an import "
            f"removes nothing); to stop serving them run `shieldes provider update {p.name} --models "
            f"{','.join(m for m in old.models + added if m not in kept)}`")
    if not diffs:
        plan.changes.append(Change("provider", p.name, "unchanged", _describe(p)))
        return
    plan.commands.append(UpdateProvider(
        p.name, p.base_url if old.base_url != p.base_url else None,
        secret_ref if old.secret_ref != secret_ref else UNSET, old.models + added if added else None,
        p.weight if old.weight != p.weight else None, responses,
        options if dict(old.options) != options else None, replace_options=True))
    plan.changes.append(Change("provider", p.name, "update", "; ".join(diffs)))


def _endpoint(options: Mapping[str, str]) -> dict[str, str]:
    """The settings saying where and how a provider is called (its quotas aside)."""
    return {k: v for k, v in options.items() if k not in COUNT_OPTIONS}


def _check_endpoint_follows(old: Deployment, p: ProviderSpec) -> None:
    """A kind whose endpoint is built from its settings (bedrock's region, vertex's location): a file
    changing the setting but keeping the endpoint the old one built would send requests to the old
    region signed for the new one; say which endpoint to write."""
    from shieldes.providers.kinds import KINDS, base_url_for

    spec = KINDS[old.kind]
    if spec.default_base_url is None or p.base_url != old.base_url:
        return
    try:
        was, now = base_url_for(spec, None, old.options), base_url_for(spec, None, dict(p.options))
    except (KeyError, CommandRejected):
        return  # a required setting missing: `provider update`'s own check refuses it, naming it
    if old.base_url == was and now != was:
        raise ImportRejected(
            f"{p.origin} changes the settings provider {p.name!r}'s endpoint is built from but keeps the old "
            f"endpoint {was}; write \"base_url\": \"{now}\" in the entry (the endpoint of its new settings) "
            f"and import again")


def in_force(state: ConfigState, model: str) -> Price | None:
    """The price that costs `model` now: a `pricing set` override, else the shipped default."""
    current = state.pricing.get(model)
    if current is not None:
        return current
    default = shipped().get(model)
    if default is None:
        return None
    return default.price()


def price_change(plan: Plan, state: ConfigState, price: PriceSpec) -> None:
    """Plan `price`: cache prices the file does not give keep the ones in force; a price equal to
    the one in force is unchanged (a re-import writes nothing); an update says what it was."""
    old = in_force(state, price.model)
    read, write, image, long = price.cache_read_per_1m, price.cache_write_per_1m, price.per_image, price.long_context
    search, factors, uses, kinds = price.per_web_search, price.multipliers, price.per_use, price.modalities
    if old is not None:
        read = old.cache_read_per_1m if read is None else read
        write = old.cache_write_per_1m if write is None else write
        image = old.per_image if image is None else image
        long = old.long_context if long is None else long
        search = old.per_web_search if search is None else search
        factors, uses, kinds = factors or old.multipliers, uses or old.per_use, kinds or old.modalities
    _price_change(plan, price.model, old, Price(price.input_per_1m, price.output_per_1m, read, write, image, long,
                                                search, factors, uses, kinds))


def exact_price_change(plan: Plan, state: ConfigState, price: PriceSpec) -> None:
    """Plan `price` as the `pricing set` price of its model (the shieldes format lists those): cache
    prices it does not give are none (they cost the input price), a shipped default is no match."""
    _price_change(plan, price.model, state.pricing.get(price.model),
                  Price(price.input_per_1m, price.output_per_1m, price.cache_read_per_1m, price.cache_write_per_1m,
                        price.per_image, price.long_context, price.per_web_search, price.multipliers,
                        price.per_use, price.modalities))


def _price_change(plan: Plan, model: str, old: Price | None, new: Price) -> None:
    """`new` as the price of `model` (now `old`): unchanged, or the command that sets it."""
    detail = _describe_price(new)
    if old == new:
        plan.changes.append(Change("pricing", model, "unchanged", detail))
        return
    if old is not None:
        detail += f" (was {_describe_price(old)})"
    plan.commands.append(SetPricing(model, new.input_per_1m, new.output_per_1m, new.cache_read_per_1m,
                                    new.cache_write_per_1m, new.per_image, new.long_context, new.per_web_search,
                                    new.multipliers, new.per_use, new.modalities))
    plan.changes.append(Change("pricing", model, "add" if old is None else "update", detail))


def _describe_price(p: Price) -> str:
    text = f"input ${p.input_per_1m:g}/1M, output ${p.output_per_1m:g}/1M"
    if p.cache_read_per_1m is not None:
        text += f", cache read ${p.cache_read_per_1m:g}/1M"
    if p.cache_write_per_1m is not None:
        text += f", cache write ${p.cache_write_per_1m:g}/1M"
    if p.per_image is not None:
        text += f", ${p.per_image:g} per image"
    if p.long_context is not None:
        lc = p.long_context
        text += (f", above {lc.above_tokens} prompt tokens: input ${lc.input_per_1m:g}/1M, "
                 f"output ${lc.output_per_1m:g}/1M")
    if p.per_web_search is not None:
        text += f", ${p.per_web_search:g} per web search"
    for where, factor in p.multipliers:
        text += f", {where} x{factor:g}"
    for tool, usd in p.per_use:
        text += f", ${usd:g} per {tool}"
    for kind, usd in p.modalities:
        text += f", {kind} ${usd:g}/1M"
    return text


def _alias_commands(aliases: list[AliasSpec], existing: set[str]) -> list[SetModelAlias]:
    """Aliases in an order every fallback exists by the time it is named: one whose fallback is
    set later (LiteLLM allows cycles: gpt-4o -> claude -> gpt-4o) is first set without it and
    completed at the end."""
    pending = {a.name for a in aliases} - existing
    first: list[SetModelAlias] = []
    later: list[SetModelAlias] = []
    for a in aliases:
        targets = tuple(AliasTarget(*t) for t in a.targets)
        chain = a.fallbacks or ()
        ready = tuple(f for f in chain if f not in pending)
        first.append(SetModelAlias(a.name, targets, ready))
        if ready != chain:
            later.append(SetModelAlias(a.name, targets, chain))
        pending.discard(a.name)
    return first + later


def _as_set(targets: tuple[AliasTarget, ...]) -> frozenset[tuple[str, str, float]]:
    """Targets compared regardless of order (a weighted pick does not depend on it)."""
    return frozenset((t.provider, t.model, t.weight) for t in targets)


def _describe_alias(targets: tuple[AliasTarget, ...], fallbacks: tuple[str, ...]) -> str:
    detail = ", ".join(f"{t.provider}/{t.model}:{t.weight:g}" for t in targets)
    return detail + (f"; fallbacks {', '.join(fallbacks)}" if fallbacks else "")


def _check_takeover(state: ConfigState, alias: AliasSpec) -> None:
    """A new alias wins over plain routing of the model of the same name: one that existing
    providers serve and the alias leaves out would silently move their traffic. Which deployments
    should serve the name is for the file to say, so the merge is refused."""
    left_out = providers_left_out(state, alias.name, {provider for provider, _, _ in alias.targets})
    if left_out:
        raise ImportRejected(
            f"{alias.origin} makes {alias.name!r} a model alias, which would take that model's requests away "
            f"from existing provider(s) {', '.join(left_out)} (an alias wins over the providers serving the "
            f"name); add them to the model group in the file, or rename the public model, and import again"
        )


def _check_unique(spec: ImportSpec) -> None:
    seen: dict[str, str] = {}
    for p in spec.providers:
        if p.name in seen:
            raise ImportRejected(
                f"{seen[p.name]} and {p.origin} both become provider {p.name!r}; give the keys distinct names"
            )
        seen[p.name] = p.origin


def _secret_ref(p: ProviderSpec, old: Deployment | None, encryption_key: str | None, *,
                updates: bool = False) -> str | None:
    if p.secret.env_var is not None:
        try:
            return env_ref(p.secret.env_var)
        except SecretError as exc:
            raise ImportRejected(f"{p.origin}: {exc.message}") from None
    if p.secret.encrypted:  # the export left the key out: keep the one stored here
        if old is not None and old.secret_ref and old.secret_ref.startswith("enc:"):
            return old.secret_ref
        if old is None:
            raise ImportRejected(
                f"{p.origin}: provider {p.name!r} had an encrypted key where the file was exported, and the file "
                f"does not hold it; write \"api_key\": \"env:VAR\" (a variable set on every node) in the file, or "
                f"remove the entry and add the provider with `shieldes provider add {p.name} ... --api-key KEY`"
            )
        if updates:
            raise ImportRejected(
                f"{p.origin}: provider {p.name!r} has {_key_here(old.secret_ref)} here, but the file says "
                f"\"encrypted\" (a key it does not hold); write \"api_key\": \"env:VAR\" in the file, or set the key "
                f"with `shieldes provider update {p.name} --api-key KEY` and export the file again")
        return "enc:"  # differs from the key stored here: refused below as a repoint, naming both
    if p.secret.plaintext is None:
        return None
    if not encryption_key:
        raise ImportRejected(
            f"{p.origin} holds a plaintext API key; set SHIELDES_ENCRYPTION_KEY to store it encrypted, "
            "or reference an environment variable instead (Bifrost: env.VAR, LiteLLM: os.environ/VAR)"
        )
    # Encryption is randomized: keep the stored token when it already holds this key (idempotence).
    if old is not None and old.secret_ref and old.secret_ref.startswith("enc:"):
        try:
            if resolve_secret(old.secret_ref, encryption_key) == p.secret.plaintext:
                return old.secret_ref
        except SecretError:
            pass
    return encrypt_secret(p.secret.plaintext, encryption_key)


def _key_here(ref: str | None) -> str:
    return "no key" if ref is None else f"key {_redact(ref)}"


def _opts(options: Mapping[str, str]) -> str:
    return "".join(f", {k}={v}" for k, v in sorted(options.items()))


def _redact(ref: str | None) -> str:
    if ref is None:
        return "none"
    return "encrypted" if ref.startswith("enc:") else ref


def _describe(p: ProviderSpec) -> str:
    return (f"{p.kind} {p.base_url}{_opts(dict(p.options))} key={p.secret.describe()} models={','.join(p.models)} "
            f"weight={p.weight:g}")
