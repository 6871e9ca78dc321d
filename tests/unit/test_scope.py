"""A key command decided on the fold of only the events its scope selects (the shared config plus
the keys and teams it names) is decided exactly as on the fold of the whole config stream, and
prints the same row for the key it wrote."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.errors import CommandRejected
from shieldes.events.codec import Codec
from shieldes.events.scope import Scope, select
from shieldes.projections.commands import Command, CreateKey, RevokeKey, decide
from shieldes.projections.config import apply_config
from shieldes.projections.scope import scope_of
from shieldes.projections.state import ConfigState
from shieldes.views import key_row
from tests.strategies import SETUP, commands, create_keys, revoke_keys

CODEC = Codec()
key_commands = st.one_of(create_keys, revoke_keys)


def _log(cmds: list[Command]) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every config event the commands wrote, as the log holds them."""
    state, log = ConfigState(), []
    for cmd in cmds:
        try:
            events = decide(state, cmd)
        except CommandRejected:
            continue
        for e in events:
            state = apply_config(state, e)
            type_, _version, data = CODEC.encode(e)
            log.append((type_, data))
    return log


def _fold(log: list[tuple[str, dict[str, Any]]]) -> ConfigState:
    state = ConfigState()
    for type_, data in log:
        state = apply_config(state, CODEC.decode(type_, 1, data))
    return state


def _decided(state: ConfigState, cmd: Command) -> tuple[str, Any]:
    try:
        events = decide(state, cmd)
    except CommandRejected as exc:
        return "refused", exc.message
    after = state
    for e in events:
        after = apply_config(after, e)
    key = after.keys[events[0].id]  # type: ignore[attr-defined]
    return "written", (events, key_row(after, key, 0.0))


@settings(max_examples=150, deadline=None)
@given(st.lists(commands, max_size=40), key_commands)
def test_a_scoped_fold_decides_a_key_command_as_the_whole_config_does(history: list[Command],
                                                                      command: Command) -> None:
    log = _log(SETUP + history)
    scope = scope_of(command)
    assert scope is not None
    selected = [log[i] for i in select(log, scope)]
    assert _decided(_fold(selected), command) == _decided(_fold(log), command)


def test_the_scope_leaves_out_other_keys_and_keeps_the_shared_config() -> None:
    log = _log(SETUP + [CreateKey(f"key_{i}", f"n{i}", f"h{i}", "sk") for i in range(50)] + [RevokeKey("n7")])
    selected = [log[i][0] for i in select(log, Scope(keys=("n7",)))]
    assert selected == ["provider.added", "virtual_key.created", "virtual_key.revoked"]
    assert scope_of(RevokeKey("n7")) == Scope(keys=("n7",))
