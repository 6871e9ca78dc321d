"""Apply a planned import as one atomic append: either every change lands or none does."""

from __future__ import annotations

from collections.abc import Callable

from shieldes.config_writer import ATTEMPTS, load_config
from shieldes.errors import ConcurrentChange
from shieldes.events.catalog import CONFIG_STREAM, Event
from shieldes.events.codec import Codec
from shieldes.events.store import AppendOptions, EventStore, NewEvent
from shieldes.importers.plan import Plan
from shieldes.projections.commands import decide
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState


def events_for(state: ConfigState, plan: Plan) -> list[Event]:
    """Decide every command in order against the state the previous ones produce (pure)."""
    events: list[Event] = []
    for command in plan.commands:
        for event in decide(state, command):
            state = apply_config(state, event)
            events.append(event)
    return events


async def apply_import(
    store: EventStore,
    make_plan: Callable[[ConfigState], Plan],
    *,
    actor: str,
    dry_run: bool,
    codec: Codec | None = None,
) -> tuple[Plan, int]:
    """Plan against the newest config and append the events; returns (plan, events appended).

    A concurrent admin change makes the append fail its optimistic check; the plan is then redone.
    A dry run decides everything (so it reports the same refusals) but appends nothing.
    """
    codec = codec or Codec()
    for attempt in range(ATTEMPTS):
        view = await load_config(store, codec)
        plan = make_plan(view.state)
        events = events_for(view.state, plan)
        if dry_run or not events:
            return plan, 0
        new = [NewEvent.of(e, codec) for e in events]
        try:
            options = AppendOptions(metadata={"actor": actor}, expected_config_position=view.position)
            await store.append(CONFIG_STREAM, new, options)
        except ConcurrentChange:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return plan, len(new)
    raise AssertionError("unreachable")
