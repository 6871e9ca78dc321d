"""Event <-> JSON data, upcasting of old versions, canonical encoding and the config hash chain."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shieldes.errors import UnknownEvent
from shieldes.events.catalog import ALL_EVENTS, Event, UsageDelta, UsageRecorded, UsageRolledUp

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]


UPGRADE = "upgrade shieldes to read this log (a newer release wrote it)"


def _tuple_fields(cls: type[Event]) -> frozenset[str]:
    """Fields declared as tuples: JSON gives lists, the frozen event wants tuples."""
    return frozenset(f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type))


def delta_data(key_id: str, team_id: str | None, provider: str, model: str, hour: int, requests: int,
               prompt_tokens: int, completion_tokens: int, cost_nusd: int, images: int = 0, audio_seconds: int = 0,
               characters: int = 0, web_searches: int = 0, file_searches: int = 0, containers: int = 0,
               tools_nusd: int = 0) -> Data:
    """A UsageDelta's stored shape, from its fields (compaction writes millions without building
    the objects). The media units and hosted tool uses only when not zero: most deltas have none,
    and a delta without them keeps the shape every release reads on its fast path."""
    data: Data = {
        "key_id": key_id,
        "team_id": team_id,
        "provider": provider,
        "model": model,
        "hour": hour,
        "requests": requests,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_nusd": cost_nusd,
    }
    if images:
        data["images"] = images
    if audio_seconds:
        data["audio_seconds"] = audio_seconds
    if characters:
        data["characters"] = characters
    if web_searches:
        data["web_searches"] = web_searches
    if file_searches:
        data["file_searches"] = file_searches
    if containers:
        data["containers"] = containers
    if tools_nusd:
        data["tools_nusd"] = tools_nusd
    return data


def _delta_to_data(d: UsageDelta) -> Data:
    return delta_data(d.key_id, d.team_id, d.provider, d.model, d.hour, d.requests, d.prompt_tokens,
                      d.completion_tokens, d.cost_nusd, d.images, d.audio_seconds, d.characters, d.web_searches,
                      d.file_searches, d.containers, d.tools_nusd)


_DELTA_FIELDS = frozenset(f.name for f in dataclasses.fields(UsageDelta))
# the members of a stored delta this release knows: compaction carries the others' numeric sums
# (a newer release's counters) through its rollups
DELTA_FIELDS = _DELTA_FIELDS
UNIT_FIELDS = ("images", "audio_seconds", "characters")  # optional in the stored shape: absent when zero
TOOL_FIELDS = ("web_searches", "file_searches", "containers", "tools_nusd")  # the same
_TOKEN_FIELDS = _DELTA_FIELDS - frozenset(UNIT_FIELDS) - frozenset(TOOL_FIELDS)
_NO_UNITS = dict.fromkeys(UNIT_FIELDS + TOOL_FIELDS, 0)
_new_object = object.__new__


def _delta_from_data(d: Data) -> UsageDelta:
    keys = d.keys()
    if keys in (_TOKEN_FIELDS, _DELTA_FIELDS):
        # Replay hot path (millions of deltas): the frozen dataclass __init__ costs ~5x more than
        # filling __dict__ directly; the stored shape is exactly ours (older shapes are upcast first).
        delta: UsageDelta = _new_object(UsageDelta)
        fields = delta.__dict__
        fields.update(_NO_UNITS)
        fields.update(d)
        return delta
    return UsageDelta(
        d["key_id"],
        d.get("team_id"),
        d["provider"],
        d["model"],
        int(d["hour"]),
        int(d["requests"]),
        int(d["prompt_tokens"]),
        int(d["completion_tokens"]),
        int(d["cost_nusd"]),
        int(d.get("images") or 0),
        int(d.get("audio_seconds") or 0),
        int(d.get("characters") or 0),
        *(int(d.get(f) or 0) for f in TOOL_FIELDS),
    )


def deltas_from_data(items: list[Data]) -> tuple[UsageDelta, ...]:
    """Stored deltas (the current version's shape) as UsageDeltas: a large flush decoded a part at a time."""
    return tuple(_delta_from_data(d) for d in items)


@dataclass(frozen=True)
class Codec:
    """Encodes events to data and back. `upcasters[(type, version)]` lifts data to `version + 1`."""

    upcasters: Mapping[tuple[str, int], Upcaster] = field(default_factory=dict)
    classes: Mapping[str, type[Event]] = field(default_factory=lambda: {c.TYPE: c for c in ALL_EVENTS})
    # per type: its field names and the ones declared as tuples (replay decodes millions of events)
    _shapes: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shapes = {t: (frozenset(f.name for f in dataclasses.fields(c)), _tuple_fields(c))
                  for t, c in self.classes.items()}
        object.__setattr__(self, "_shapes", shapes)

    def encode(self, event: Event) -> tuple[str, int, Data]:
        if isinstance(event, UsageRecorded | UsageRolledUp):
            data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "deltas"}
            data["deltas"] = [_delta_to_data(d) for d in event.deltas]
        else:
            data = {}
            for f in dataclasses.fields(event):
                value = getattr(event, f.name)
                data[f.name] = list(value) if isinstance(value, tuple) else value
        return event.TYPE, event.VERSION, data

    def decode(self, type_: str, version: int, data: Data) -> Event:
        cls = self.classes.get(type_)
        if cls is None:
            raise UnknownEvent(f"unknown event type {type_!r}; {UPGRADE}")
        while version < cls.VERSION:
            upcast = self.upcasters.get((type_, version))
            if upcast is None:
                raise UnknownEvent(f"no upcaster for {type_} v{version} -> v{version + 1}; {UPGRADE}")
            data = upcast(data)
            version += 1
        if version > cls.VERSION:
            raise UnknownEvent(f"{type_} v{version} is newer than this shieldes understands (v{cls.VERSION}); "
                               f"{UPGRADE}")
        if cls is UsageRecorded:
            return UsageRecorded(
                data["node_id"], int(data["epoch"]), int(data["seq"]),
                tuple(_delta_from_data(d) for d in data["deltas"]),
            )
        if cls is UsageRolledUp:
            return UsageRolledUp(
                int(data["replaced_events"]), int(data["first_position"]), int(data["last_position"]),
                tuple(_delta_from_data(d) for d in data["deltas"]),
            )
        names, tuples = self._shapes[type_]
        kwargs = {
            k: (tuple(v) if k in tuples and isinstance(v, list) else v)
            for k, v in data.items()
            if k in names
        }
        return cls(**kwargs)


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept. Stable across jsonb round trips."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


GENESIS_HASH = "0" * 64
_EXACT_INT_FLOAT = 1e16  # from here on a float's JSON text has an exponent; Postgres prints all digits


def stored_form(value: Any) -> Any:
    """`value` as it reads back from a jsonb column: Postgres keeps numbers as decimals, so -0.0
    comes back 0.0 and 1e+300 comes back as the integer 10**300. Hashing this form means the hash
    an append computes is the one `audit verify` recomputes from the stored row."""
    if isinstance(value, float):
        if value == 0.0:
            return 0.0
        if abs(value) >= _EXACT_INT_FLOAT and math.isfinite(value):
            return int(Decimal(repr(value)))
        return value
    if isinstance(value, dict):
        return {k: stored_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [stored_form(v) for v in value]
    return value


def chain_hash(
    prev_hash: str,
    *,
    position: int,
    stream: str,
    type_: str,
    version: int,
    data: Data,
    metadata: Data,
    recorded_at: datetime,
) -> str:
    """Hash of one config event linked to its predecessor; editing any field breaks the chain."""
    body = canonical_json(
        {
            "position": position,
            "stream": stream,
            "type": type_,
            "version": version,
            "data": stored_form(data),
            "metadata": stored_form(metadata),
            "recorded_at": recorded_at.astimezone(UTC).isoformat(),
        }
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()
