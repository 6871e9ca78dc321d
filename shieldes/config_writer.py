"""Config writes: catch up the config, decide, append with an optimistic check, retry on a race.

Used by the CLI (`scoped_write`, which folds only what a key command reads; else `write_config`,
which folds the newest snapshot's config plus the config stream after it) and by a node's admin API
(`execute_live`, which decides on the node's in-memory projection). A refused command appends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from shieldes.errors import ConcurrentChange, IdempotencyConflict
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import Codec
from shieldes.events.store import AppendOptions, EventStore, NewEvent, RecordedEvent
from shieldes.projections.commands import Command, decide
from shieldes.projections.config import apply_config, apply_recorded
from shieldes.projections.scope import scope_of
from shieldes.projections.state import ConfigState

if TYPE_CHECKING:  # a node's projector (with the usage fold): not imported by the CLI's writes
    from shieldes.projections.projector import Projector

ATTEMPTS = 5


@dataclass
class ConfigView:
    """The config folded up to a position of the log."""

    state: ConfigState
    position: int  # position of the newest config event folded


@dataclass
class LiveWrite:
    """A node's write: the events appended and the config right after them."""

    events: list[RecordedEvent]
    state: ConfigState  # the config right after the write (or now, for a replay)
    replayed: bool = False  # an earlier request with the same idempotency key did this write


async def load_config(
    store: EventStore, codec: Codec, *, upto: int | None = None, until: datetime | None = None,
    base: ConfigView | None = None,
) -> ConfigView:
    """Fold the config stream (usage is not needed to decide config commands), optionally only the
    events at or before position `upto` and recorded at or before `until` (time travel). `base`:
    a config already folded up to its position (a snapshot's, or an earlier fold), continued."""
    state, position = (base.state, base.position) if base is not None else (ConfigState(), 0)
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
    return (await write_config(store, command, actor=actor, codec=codec)).events


async def write_config(
    store: EventStore, command: Command, *, actor: str, codec: Codec | None = None,
    base: ConfigView | None = None,
) -> LiveWrite:
    """`execute`, starting the fold from `base` (e.g. a snapshot's config) instead of position 0,
    and returning the config right after the write too. A lost race folds only what landed since."""
    codec = codec or Codec()
    view = base
    for attempt in range(ATTEMPTS):
        view = await load_config(store, codec, base=view)
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
        return LiveWrite(list(result.events), apply_recorded(view.state, result.events, codec))
    raise AssertionError("unreachable")


async def scoped_write(
    store: EventStore, command: Command, *, actor: str, codec: Codec | None = None
) -> LiveWrite | None:
    """`write_config` for a command whose decision reads only the entities it names
    (projections/scope.py): folds the shared config plus those entities' events, a few dozen
    events whatever the number of keys, and decides on that, in the transaction of the append
    (`EventStore.append_scoped`). None: the command needs the whole config. The returned state
    holds only what was folded (enough to print the result)."""
    scope = scope_of(command)
    if scope is None:
        return None
    codec = codec or Codec()

    def decided(events: Sequence[RecordedEvent]) -> list[NewEvent]:
        return [NewEvent.of(e, codec) for e in decide(apply_recorded(ConfigState(), events, codec), command)]

    for attempt in range(ATTEMPTS):
        try:
            read, result = await store.append_scoped(scope, decided, AppendOptions(metadata={"actor": actor}))
        except ConcurrentChange:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        # the few events read, folded again with the ones written: the state to print
        return LiveWrite(list(result.events), apply_recorded(ConfigState(), [*read, *result.events], codec))
    raise AssertionError("unreachable")


IDEMPOTENCY_FIELD = "idempotency_key"


async def execute_live(
    projector: Projector, command: Command, *, actor: str, idempotency: tuple[str, str] | None = None
) -> LiveWrite:
    """Decide `command` against a running node's projection and append its events, with no replay:
    the decision is made on the projection's newest config event, and the append is refused (then
    the projection catches up and it is retried) if any config event landed after that one. The
    events written are applied from the append's result (no read back) before this returns.

    `idempotency` is (key, request fingerprint): a second request with the same key (same actor)
    returns the first one's events instead of writing again; a different fingerprint is refused.
    The lookup runs after the config position is taken, so a concurrent twin either is found or
    makes this append fail the position check and look again."""
    store = projector.store
    codec = projector.projection.codec
    metadata: dict[str, str] = {"actor": actor}
    if idempotency is not None:
        metadata[IDEMPOTENCY_FIELD] = f"{actor}\x1f{idempotency[0]}"
        metadata["request_fingerprint"] = idempotency[1]
    for attempt in range(ATTEMPTS):
        if attempt:  # refused: config events landed after the projection's newest one
            await projector.catch_up()
        config_position = projector.projection.config_tip[0]
        if idempotency is not None:
            earlier = await store.find_config(IDEMPOTENCY_FIELD, metadata[IDEMPOTENCY_FIELD])
            if earlier:
                if earlier[0].metadata.get("request_fingerprint") != idempotency[1]:
                    raise IdempotencyConflict(
                        f"Idempotency-Key {idempotency[0]!r} was already used with a different request body; "
                        "use a new key for a new request"
                    )
                await projector.wait_for(earlier[-1].position, timeout=5.0)
                return LiveWrite(earlier, projector.config, replayed=True)
        events = decide(projector.config, command)
        new = [NewEvent.of(e, codec) for e in events]
        try:
            result = await store.append(
                CONFIG_STREAM, new, AppendOptions(metadata=metadata, expected_config_position=config_position)
            )
        except ConcurrentChange:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        await projector.apply_appended(result.events)  # read-your-writes on this node
        return LiveWrite(list(result.events), projector.config)
    raise AssertionError("unreachable")
