"""Projection <-> snapshot bytes: deterministic JSON of plain values, zstd-compressed, sealed.

The encoding is a pure function of the state: the same Projection always gives the same bytes
(sorted keys, explicit field lists, no pickles, no import paths), so a checksum mismatch means the
stored bytes changed, and two nodes snapshotting the same position write identical snapshots.
A change to this layout bumps FORMAT; the loader skips snapshots of another format or schema.

The seal is an HMAC-SHA256 keyed from SHIELDES_CLUSTER_SECRET when the writer has one (someone with
write access to the table but not the secret cannot forge a snapshot), else a plain sha256 (detects
corruption only). Either way the snapshot records the config hash chain's tip, which the loader
checks against the log before it trusts the snapshot's config.

Each snapshot also carries its teams part apart (teams_part.py, sealed the same way): a
teams-only read fetches and decodes that instead of the whole state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Any

import orjson
import zstandard

from shieldes import db
from shieldes.events.codec import TOOL_FIELDS, UNIT_FIELDS
from shieldes.projections.keytable import layered_key_maps
from shieldes.projections.projector import Projection
from shieldes.projections.state import (
    AdminToken,
    AliasTarget,
    Budget,
    ConfigState,
    Deployment,
    LongContext,
    McpServer,
    ModelAlias,
    OidcSession,
    Price,
    Team,
    VirtualKey,
)
from shieldes.projections.team_keys import team_key_counts
from shieldes.projections.usage import Totals, UsageState, keep_newest_boots
from shieldes.snapshots import key_columns

# the seal and the teams part have modules of their own (a teams-only read imports only those);
# their names stay importable from here
from shieldes.snapshots.seal import MAC_PREFIX as MAC_PREFIX
from shieldes.snapshots.seal import SnapshotCorrupt as SnapshotCorrupt
from shieldes.snapshots.seal import check_seal as check_seal
from shieldes.snapshots.seal import mac_key as mac_key
from shieldes.snapshots.seal import seal_of
from shieldes.snapshots.teams_part import TEAMS_FORMAT as TEAMS_FORMAT
from shieldes.snapshots.teams_part import decode_teams as decode_teams
from shieldes.snapshots.teams_part import teams_to_json as teams_to_json

FORMAT = 5  # 2: config_tip recorded; HMAC seal. 3: virtual keys as columns (key_columns.py). 4: usage
#            totals with media units (images, audio_seconds, characters). 5: and with hosted tool uses
#            (web_searches, file_searches, containers, tools_nusd)
READABLE_FORMATS = frozenset({2, 3, 4, 5})  # layouts decode() reads: older snapshots keep loading
# Usage deltas carry media units from this schema on (a node runs only at its own schema head): a
# snapshot of an older layout written at it or later left units out of its totals, so it is not loaded
# (the log is replayed instead); one written before it holds none to leave out.
UNITS_SCHEMA = "0017"
TOOLS_SCHEMA = "0024"  # the same for the hosted tool uses (format 5)
ZSTD_LEVEL = 3  # level 3 is ~10x faster than 19 and within ~15% of its size on this data
Plain = dict[str, Any]
TOTALS_FIELDS = tuple(f.name for f in fields(Totals))  # a snapshot's order: format 4 has the first 7


@dataclass(frozen=True)
class EncodedSnapshot:
    position: int
    schema_version: str
    format: int
    state: bytes  # zstd-compressed JSON
    checksum: str  # sha256 hex of `state`, or MAC_PREFIX + HMAC-SHA256 hex of it
    # the teams and their key counts alone (teams_to_json), compressed and sealed the same way
    teams: bytes | None = None
    teams_checksum: str | None = None

    @property
    def size_bytes(self) -> int:
        return len(self.state) + len(self.teams or b"")


def is_compatible(schema_version: str, fmt: int) -> bool:
    """A snapshot holds the projection, which the event catalog defines, not the SQL schema: one
    written at an older schema revision loads as long as its layout (`fmt`) is one this code reads."""
    return (schema_version <= db.SCHEMA_HEAD and fmt in READABLE_FORMATS
            and (fmt >= 4 or schema_version < UNITS_SCHEMA) and (fmt >= 5 or schema_version < TOOLS_SCHEMA))


def left_out(fmt: int) -> tuple[str, ...]:
    """The optional delta fields a layout's usage totals leave out. The schema a snapshot names is
    its writer's head, not the database's: a node of a release before UNITS_SCHEMA / TOOLS_SCHEMA
    keeps serving (and, as leader, snapshotting) after a newer release migrated the database and
    its nodes appended deltas holding these fields, so the loader checks the log for them."""
    if fmt < 4:
        return UNIT_FIELDS + TOOL_FIELDS
    return TOOL_FIELDS if fmt < 5 else ()


def formats_at_head() -> frozenset[int]:
    """The layouts of the snapshots this release loads when they were written at its own schema."""
    return frozenset(f for f in READABLE_FORMATS if is_compatible(db.SCHEMA_HEAD, f))


# --- config ------------------------------------------------------------------------------------


def _budget(b: Budget | None) -> Plain | None:
    return None if b is None else {"amount_usd": b.amount_usd, "period": b.period}


def _budget_from(p: Plain | None) -> Budget | None:
    return None if p is None else Budget(p["amount_usd"], p["period"])


def _tuple(v: list[str] | None) -> tuple[str, ...] | None:
    return None if v is None else tuple(v)


def config_to_plain(c: ConfigState, fmt: int = FORMAT) -> Plain:
    if fmt < 3:
        return _config_to_plain_v2(c)
    # the three key maps become one set of columns (the indexes are rebuilt on load)
    plain = _config_to_plain_v2(replace(c, keys={}, key_ids_by_hash={}, key_ids_by_name={}))
    for field in ("keys", "key_ids_by_hash", "key_ids_by_name"):
        del plain[field]
    plain["key_columns"] = key_columns.to_plain(c.keys)
    return plain


def _price_to_plain(p: Price) -> list[Any]:
    """2 or 4 numbers, then the per-image price, the long-context tier (a list of 5 or null), the
    per-web-search price, the multipliers ({where: factor}), the per-use prices ({tool: USD}) and the
    token prices by modality ({kind: USD per 1M}),
    each only when it or one after it
    is set: snapshots without them read as before everywhere."""
    lc = p.long_context
    tail: list[Any] = [p.per_image,
                       None if lc is None else [lc.above_tokens, lc.input_per_1m, lc.output_per_1m,
                                                lc.cache_read_per_1m, lc.cache_write_per_1m],
                       p.per_web_search, dict(p.multipliers) if p.multipliers else None,
                       dict(p.per_use) if p.per_use else None,
                       dict(p.modalities) if p.modalities else None]
    while tail and tail[-1] is None:
        tail.pop()
    return [p.input_per_1m, p.output_per_1m, p.cache_read_per_1m, p.cache_write_per_1m, *tail]


def _price_from_plain(v: list[Any]) -> Price:
    if len(v) > 5:
        long = None if v[5] is None else LongContext(*v[5])
        multipliers = tuple(sorted(v[7].items())) if len(v) > 7 and v[7] else ()
        per_use = tuple(sorted(v[8].items())) if len(v) > 8 and v[8] else ()
        modalities = tuple(sorted(v[9].items())) if len(v) > 9 and v[9] else ()
        return Price(v[0], v[1], v[2], v[3], v[4], long, v[6] if len(v) > 6 else None, multipliers, per_use,
                     modalities)
    return Price(*v)


def _config_to_plain_v2(c: ConfigState) -> Plain:
    return {
        "providers": {
            n: {"kind": d.kind, "base_url": d.base_url, "secret_ref": d.secret_ref,
                "models": list(d.models), "weight": d.weight, "responses": d.responses,
                "options": dict(d.options)}
            for n, d in c.providers.items()
        },
        "pricing": {
            # the per-image price only when set: snapshots without one read as before everywhere
            m: _price_to_plain(p)
            for m, p in c.pricing.items()
        },
        "teams": {t.id: {"name": t.name, "budget": _budget(t.budget)} for t in c.teams.values()},
        "keys": {
            k.id: {
                "name": k.name, "key_hash": k.key_hash, "prefix": k.prefix,
                "models": None if k.models is None else list(k.models), "team_id": k.team_id,
                "expires_at": k.expires_at, "revoked": k.revoked, "rpm": k.rpm, "tpm": k.tpm,
                "budget": _budget(k.budget),
            }
            for k in c.keys.values()
        },
        "key_ids_by_hash": dict(c.key_ids_by_hash),
        "key_ids_by_name": dict(c.key_ids_by_name),
        "team_ids_by_name": dict(c.team_ids_by_name),
        "admin_tokens": {
            t.id: {"name": t.name, "role": t.role, "key_hash": t.key_hash, "prefix": t.prefix, "revoked": t.revoked,
                   **({"expires_at": t.expires_at} if t.expires_at is not None else {})}
            for t in c.admin_tokens.values()
        },
        "aliases": {
            a.name: {"targets": [[t.provider, t.model, t.weight] for t in a.targets], "fallbacks": list(a.fallbacks)}
            for a in c.aliases.values()
        },
        "routing": dict(c.routing),
        "mcp_servers": {n: {"url": m.url, "headers": dict(m.headers)} for n, m in c.mcp_servers.items()},
        "mcp_access": {k: list(v) for k, v in c.mcp_access.items()},
        # a session ended early must stay ended for a node that starts from this snapshot
        "oidc_sessions": {
            i: {"user": o.user, "role": o.role, "started_at": o.started_at, "expires_at": o.expires_at,
                "ended": o.ended, "ended_at": o.ended_at}
            for i, o in c.oidc_sessions.items()
        },
    }


def config_from_plain(p: Plain) -> ConfigState:
    if "key_columns" not in p:  # format 2
        return _config_from_plain_v2(p)
    keys, by_hash, by_name = layered_key_maps(key_columns.from_plain(p["key_columns"]))
    return replace(_config_from_plain_v2({**p, "keys": {}, "key_ids_by_hash": {}, "key_ids_by_name": {}}),
                   keys=keys, key_ids_by_hash=by_hash, key_ids_by_name=by_name, team_keys=team_key_counts(keys))


def _config_from_plain_v2(p: Plain) -> ConfigState:
    return ConfigState(
        providers={
            n: Deployment(n, d["kind"], d["base_url"], d["secret_ref"], tuple(d["models"]), d["weight"],
                          d.get("responses", "translate"), dict(d.get("options", {})))
            for n, d in p["providers"].items()
        },
        pricing={m: _price_from_plain(v) for m, v in p["pricing"].items()},
        teams={i: Team(i, t["name"], _budget_from(t["budget"])) for i, t in p["teams"].items()},
        keys={
            i: VirtualKey(
                i, k["name"], k["key_hash"], k["prefix"], _tuple(k["models"]), k["team_id"], k["expires_at"],
                k["revoked"], k["rpm"], k["tpm"], _budget_from(k["budget"]),
            )
            for i, k in p["keys"].items()
        },
        key_ids_by_hash=dict(p["key_ids_by_hash"]),
        key_ids_by_name=dict(p["key_ids_by_name"]),
        team_ids_by_name=dict(p["team_ids_by_name"]),
        # absent from snapshots written before admin tokens existed: the same layout otherwise
        **_admin_tokens_from(p.get("admin_tokens", {})),
        aliases={
            n: ModelAlias(n, tuple(AliasTarget(t[0], t[1], t[2]) for t in a["targets"]), tuple(a["fallbacks"]))
            for n, a in p.get("aliases", {}).items()  # absent from snapshots written before aliases
        },
        routing=dict(p.get("routing", {})),
        # absent from snapshots written before MCP servers existed
        mcp_servers={n: McpServer(n, m["url"], dict(m["headers"])) for n, m in p.get("mcp_servers", {}).items()},
        mcp_access={k: tuple(v) for k, v in p.get("mcp_access", {}).items()},
        # absent from snapshots written before console sessions were in the log
        oidc_sessions={i: OidcSession(i, o["user"], o["role"], o["started_at"], o["expires_at"], o["ended"],
                                      o["ended_at"]) for i, o in p.get("oidc_sessions", {}).items()},
    )


def _admin_tokens_from(p: Plain) -> dict[str, Any]:
    tokens = {i: AdminToken(i, t["name"], t["role"], t["key_hash"], t["prefix"], t["revoked"], t.get("expires_at"))
              for i, t in p.items()}
    return {
        "admin_tokens": tokens,
        "admin_token_ids_by_hash": {t.key_hash: t.id for t in tokens.values() if not t.revoked},
        "admin_token_ids_by_name": {t.name: t.id for t in tokens.values()},
    }


# --- usage -------------------------------------------------------------------------------------


def _int_keys(d: dict[str, Any]) -> dict[int, int]:
    return {int(k): int(v) for k, v in d.items()}


def usage_to_plain(u: UsageState, fmt: int = FORMAT) -> Plain:
    *_, plain = usage_to_plain_steps(u, fmt)
    assert plain is not None  # (the last step is the plain usage)
    return plain


USAGE_SLICE = 2_000  # entries turned plain between two turns of the event loop (ms of work at most)


def usage_to_plain_steps(u: UsageState, fmt: int = FORMAT) -> Iterator[Plain | None]:
    """usage_to_plain's work a slice at a time: None after each slice, then the plain usage (a
    snapshot of a serving node turns the loop at each None, its projector held still meanwhile:
    100,000 keys with usage took 0.6-0.9 s in one go)."""
    fields = (attrgetter("requests", "prompt_tokens", "completion_tokens", "cost_nusd")
              if fmt < 4 else attrgetter(*TOTALS_FIELDS[:7]) if fmt < 5 else attrgetter(*TOTALS_FIELDS))
    totals: Plain = {}
    for part in _slices(list(u.totals.items())):
        totals.update([(k, list(fields(t))) for k, t in part])
        yield None
    # JSON object keys are strings: day and epoch numbers are written as decimal strings.
    daily: list[Plain] = []
    for table in (u.key_daily_cost, u.team_daily_cost):
        costs: Plain = {}
        for part in _slices(list(table.items())):
            costs.update([(k, {str(d): c for d, c in v.items()}) for k, v in part])
            yield None
        daily.append(costs)
    yield {"totals": totals, "key_daily_cost": daily[0], "team_daily_cost": daily[1],
           "node_seqs": {n: {str(e): s for e, s in v.items()} for n, v in u.node_seqs.items()},
           "latest_day": u.latest_day}


def _slices(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), USAGE_SLICE):
        yield items[start:start + USAGE_SLICE]


def usage_from_plain(p: Plain) -> UsageState:
    return UsageState(
        totals={k: Totals(*v) for k, v in p["totals"].items()},
        key_daily_cost={k: _int_keys(v) for k, v in p["key_daily_cost"].items()},
        team_daily_cost={k: _int_keys(v) for k, v in p["team_daily_cost"].items()},
        # a snapshot of an older release holds every boot's watermark: keep what the fold keeps
        node_seqs=keep_newest_boots({n: _int_keys(v) for n, v in p["node_seqs"].items()}),
        latest_day=int(p["latest_day"]),
    )


# --- whole projection --------------------------------------------------------------------------


@dataclass(frozen=True)
class StateParts:
    """What a snapshot holds, read at one position: the config (a persistent value: the fold makes a
    new state for each event and never changes one, so it can be encoded later, in a thread) and the
    usage already turned plain (the projector changes the usage state in place)."""

    config: ConfigState
    usage: Plain
    position: int
    config_tip: tuple[int, str]


def parts_of(projection: Projection, fmt: int = FORMAT) -> StateParts:
    """The parts, read in one go (a projection nothing else changes meanwhile)."""
    return StateParts(projection.config, usage_to_plain(projection.usage, fmt), projection.position,
                      projection.config_tip)


async def parts_in_slices(projection: Projection, fmt: int = FORMAT) -> StateParts:
    """The parts, the usage read a slice at a time with the event loop turning between: the caller
    holds the projection still meanwhile (Projector.still)."""
    config, position, tip = projection.config, projection.position, projection.config_tip
    usage: Plain | None = None
    for usage in usage_to_plain_steps(projection.usage, fmt):
        if usage is None:
            await asyncio.sleep(0)
    assert usage is not None
    return StateParts(config, usage, position, tip)


def projection_to_json(projection: Projection, fmt: int = FORMAT) -> bytes:
    """The snapshot's JSON. `fmt`: an older layout this release still reads (for tests and benchmarks
    of old snapshots)."""
    return b"".join(_state_chunks(parts_of(projection, fmt), fmt))


JSON_SLICE = 20_000  # list items orjson encodes in one call


def _state_chunks(parts: StateParts, fmt: int) -> list[bytes]:
    """The snapshot's JSON as chunks in order, never joined: orjson holds the GIL for a whole call,
    and a serving node encodes a snapshot in a thread, so one call over a million keys' columns (or
    one join of them) would hold the event loop, waiting for the GIL, for its whole length. The
    long lists of the key columns are encoded a slice per call; the rest in one call around them,
    each list's place marked by a NUL byte and its number (JSON's own text never holds a NUL)."""
    config = config_to_plain(parts.config, fmt)
    lists: list[list[bytes]] = []
    if "key_columns" in config:
        config["key_columns"] = _set_aside(config["key_columns"], lists)
    around = orjson.dumps({"format": fmt, "position": parts.position, "config": config, "usage": parts.usage,
                           "config_tip": list(parts.config_tip)}, option=orjson.OPT_SORT_KEYS)
    chunks: list[bytes] = []
    for i, text in enumerate(around.split(b"\0")):
        if i % 2:
            chunks += lists[int(text)]
        elif text:
            chunks.append(text)
    return chunks


def _set_aside(value: Any, lists: list[list[bytes]]) -> Any:
    """`value` with each long list encoded apart, a slice per call, into `lists`, and a marker in its
    place (a sparse field's [rows, values] is a short list of two long ones)."""
    if isinstance(value, dict):
        return {k: _set_aside(v, lists) for k, v in value.items()}
    if not isinstance(value, list | tuple):
        return value
    if len(value) <= JSON_SLICE:
        return [_set_aside(v, lists) for v in value]
    chunks = [b"["]
    for start in range(0, len(value), JSON_SLICE):
        chunks += (b"," if start else b"", orjson.dumps(value[start:start + JSON_SLICE],
                                                        option=orjson.OPT_SORT_KEYS)[1:-1])
    chunks.append(b"]")
    lists.append(chunks)
    return orjson.Fragment(b"\0%d\0" % (len(lists) - 1))


def seal(raw_json: bytes | Sequence[bytes], position: int, key: bytes | None = None, fmt: int = FORMAT,
         teams_json: bytes | None = None) -> EncodedSnapshot:
    state = _compressed([raw_json] if isinstance(raw_json, bytes) else raw_json)
    teams = None if teams_json is None else _compressed([teams_json])
    return EncodedSnapshot(position, db.SCHEMA_HEAD, fmt, state, seal_of(state, key),
                           teams, None if teams is None else seal_of(teams, key))


def _compressed(chunks: Sequence[bytes]) -> bytes:
    """One zstd frame of the chunks in order, its content size in the header (as decompress() needs
    it), fed a chunk at a time (zstd works without the GIL)."""
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj(size=sum(len(c) for c in chunks))
    out = [compressor.compress(chunk) for chunk in chunks]
    out.append(compressor.flush())
    return b"".join(out)


def encode(projection: Projection, key: bytes | None = None, fmt: int = FORMAT) -> EncodedSnapshot:
    return encode_parts(parts_of(projection, fmt), key, fmt)


def encode_parts(parts: StateParts, key: bytes | None = None, fmt: int = FORMAT) -> EncodedSnapshot:
    """The snapshot of `parts`: a serving node runs it in a thread (at a million keys the config's
    encoding took 3.6-5 s of CPU, all of it held on the event loop before)."""
    return seal(_state_chunks(parts, fmt), parts.position, key, fmt,
                teams_to_json(parts.config, parts.position, parts.config_tip))


def decode_config(state: bytes, checksum: str, position: int,
                  key: bytes | None = None) -> tuple[ConfigState, tuple[int, str]]:
    """Only the config part and its chain tip (a config write needs no usage state)."""
    plain = _open(state, checksum, position, key)
    with _corrupt_if_undecodable():
        tip_position, tip_hash = plain["config_tip"]
        return config_from_plain(plain["config"]), (int(tip_position), str(tip_hash))


@contextlib.contextmanager
def _corrupt_if_undecodable() -> Iterator[None]:
    """Bytes that do not decode as a snapshot raise SnapshotCorrupt (a reader then skips it)."""
    try:
        yield
    except SnapshotCorrupt:
        raise
    except (zstandard.ZstdError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise SnapshotCorrupt(f"undecodable: {type(exc).__name__}: {exc}") from exc


def _open(state: bytes, checksum: str, position: int, key: bytes | None) -> Any:
    """Verified, decompressed and parsed, header checked."""
    check_seal(state, checksum, key)
    with _corrupt_if_undecodable():
        plain = orjson.loads(zstandard.ZstdDecompressor().decompress(state))
        if plain["format"] not in READABLE_FORMATS or plain["position"] != position:
            raise SnapshotCorrupt(f"header says format {plain['format']} position {plain['position']}")
        return plain


def decode(state: bytes, checksum: str, position: int, key: bytes | None = None) -> Projection:
    """Verify, decompress and rebuild; raises SnapshotCorrupt on any mismatch."""
    plain = _open(state, checksum, position, key)
    with _corrupt_if_undecodable():
        projection = Projection(config_from_plain(plain["config"]), usage_from_plain(plain["usage"]), position)
        tip_position, tip_hash = plain["config_tip"]
        projection.config_tip = (int(tip_position), str(tip_hash))
        return projection
