"""Admin writes: catch up the config, decide, append with an optimistic check, retry on a race.

Used by the CLI (and any admin surface). A refused command appends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shieldes.errors import ConcurrentChange
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import Codec
from shieldes.events.store import AppendOptions, EventStore, NewEvent, RecordedEvent
from shieldes.projections.commands import Command, decide
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState

ATTEMPTS = 5


@dataclass
class ConfigView:
    state: ConfigState
    position: int  # position of the newest config event folded


async def load_config(
    store: EventStore, codec: Codec, *, upto: int | None = None, until: datetime | None = None
) -> ConfigView:
    """Fold the config stream (usage is not needed to decide config commands), optionally only the
    events at or before position `upto` and recorded at or before `until` (time travel)."""
    state, position = ConfigState(), 0
    while True:
        page = await store.read(position, 5000, stream=CONFIG_STREAM)
        for recorded in page:
            if (upto is not None and recorded.position > upto) or (
                until is not None and recorded.recorded_at > until
            ):
                return ConfigView(state, position)
            state = apply_config(state, codec.decode(recorded.type, recorded.version, recorded.data))
            position = recorded.position
        if len(page) < 5000:
            return ConfigView(state, position)


async def execute(
    store: EventStore, command: Command, *, actor: str, codec: Codec | None = None
) -> list[RecordedEvent]:
    """Decide `command` against the newest config and append its events atomically."""
    codec = codec or Codec()
    for attempt in range(ATTEMPTS):
        view = await load_config(store, codec)
        events = decide(view.state, command)
        new = [NewEvent.of(e, codec) for e in events]
        try:
            result = await store.append(
                CONFIG_STREAM, new, AppendOptions(metadata={"actor": actor}, expected_config_position=view.position)
            )
        except ConcurrentChange:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return await store.read(result.first_position - 1, len(new), stream=CONFIG_STREAM)
    raise AssertionError("unreachable")
