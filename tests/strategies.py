"""Hypothesis strategies: random admin commands (valid and invalid) and usage flushes, plus the
check that the state built live equals the state replayed from the log."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from shieldes.errors import CommandRejected
from shieldes.events.catalog import CONFIG_STREAM, UsageDelta, UsageRecorded, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.store import AppendOptions, EventStore, NewEvent
from shieldes.projections.commands import (
    UNSET,
    CreateKey,
    CreateTeam,
    RevokeKey,
    RotateKey,
    SetBudget,
    UpdateKey,
    decide,
)
from shieldes.projections.config import apply_config
from shieldes.projections.projector import Projection, Projector
from shieldes.projections.shared_commands import (
    AddMcpServer,
    AddProvider,
    RemoveMcpServer,
    RemoveModelAlias,
    RemoveProvider,
    SetMcpHeaders,
    SetModelAlias,
    SetPricing,
    UpdateProvider,
)
from shieldes.projections.state import AliasTarget
from shieldes.projections.usage import UsageState, apply_usage
from shieldes.providers.signed_reasoning import ITEM_PREFIX, PREFIX
from shieldes.responses.compaction import SEAL
from shieldes.timeparse import MAX_EXPIRY

# Mostly valid values, so that sequences build real state; a few invalid ones get refused.
names = st.sampled_from(["a", "b", "a", "b", "a", "b", "k.2", "", "x'; DROP TABLE events;--"])
ids = st.integers(0, 4).map(lambda i: f"id{i}")
money = st.one_of(
    st.floats(0, 1e12),
    st.floats(0, 100),
    st.floats(0, 100),
    st.sampled_from([-1.0, float("nan"), 2e12, 1e17, 0.1]),
)
periods = st.sampled_from(["1d", "30d", "1mo", "366d", "30d", "1mo", "0d", " 7D "])
model_names = st.sampled_from(["gpt-4o", "m-1", "claude", "gpt-4o", "m-1", "claude", "bad model"])
models = st.lists(model_names, min_size=1, max_size=3, unique=True).map(tuple) | st.just(())
limits = st.one_of(st.none(), st.integers(1, 10**6), st.integers(-2, 10**13))
secret_refs = st.sampled_from([None, "env:OPENAI_API_KEY", "enc:gAAAA-token"])
urls = st.sampled_from(["https://api.openai.com/v1", "http://localhost:9/", "https://x.io", "ftp://nope"])
weights = st.one_of(st.floats(0.01, 100), st.floats(-1, 2e6), st.just(float("nan")))
expiries = st.one_of(st.none(), st.floats(0, MAX_EXPIRY))  # the CLI and admin API refuse later ones


mcp_entries = st.lists(st.sampled_from(["a", "b", "a/search", "*", "nope", "b/*", "a/"]), max_size=2).map(tuple)


def unset_or(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(UNSET), strategy)


create_keys = st.builds(
    CreateKey,
    ids.map(lambda i: "key_" + i),
    names,
    st.integers(0, 9).map(lambda i: f"hash{i}"),
    st.just("sk-shd-abcd"),
    st.one_of(st.none(), models),
    limits,
    limits,
    st.one_of(st.none(), money),
    periods,
    st.one_of(st.none(), st.none(), names),
    expiries,
    st.one_of(st.none(), mcp_entries),
)
revoke_keys = st.builds(RevokeKey, st.one_of(names, ids.map(lambda i: "key_" + i)))
commands = st.one_of(
    st.builds(
        AddProvider,
        names,
        st.sampled_from(["openai", "anthropic", "bogus"]),
        urls,
        secret_refs,
        models,
        weights,
    ),
    st.builds(
        UpdateProvider,
        names,
        st.one_of(st.none(), urls),
        unset_or(secret_refs),
        st.one_of(st.none(), models),
        st.one_of(st.none(), weights),
    ),
    st.builds(RemoveProvider, names),
    st.builds(
        SetModelAlias,
        names,
        st.lists(st.builds(AliasTarget, names, model_names, weights), max_size=2).map(tuple),
        st.lists(st.sampled_from(["a", "b", "gpt-4o", "nope"]), max_size=2).map(tuple),
    ),
    st.builds(RemoveModelAlias, names),
    st.builds(AddMcpServer, names, urls, st.sampled_from([{}, {"Authorization": "enc:gAAAA-token"},
                                                          {"X-Api-Key": "env:TOOLS_KEY"}, {"Host": "env:H"}])),
    st.builds(RemoveMcpServer, names),
    st.builds(SetMcpHeaders, names, st.sampled_from([{}, {"Authorization": "enc:gAAAA-other"}])),
    st.builds(SetPricing, names, money, money),
    st.builds(CreateTeam, ids.map(lambda i: "team_" + i), names, st.one_of(st.none(), money), periods),
    create_keys,
    st.builds(
        UpdateKey,
        st.one_of(names, ids.map(lambda i: "key_" + i)),
        unset_or(st.one_of(st.none(), models)),
        unset_or(limits),
        unset_or(limits),
        unset_or(st.one_of(st.none(), names)),
        unset_or(expiries),
        unset_or(st.one_of(st.none(), mcp_entries)),
    ),
    revoke_keys,
    st.builds(RotateKey, names, st.integers(10, 19).map(lambda i: f"hash{i}"), st.just("sk-shd-efgh")),
    st.builds(SetBudget, st.sampled_from(["key", "team"]), names, st.one_of(st.none(), money), periods),
)

deltas = st.builds(
    UsageDelta,
    ids.map(lambda i: "key_" + i),
    st.one_of(st.none(), ids.map(lambda i: "team_" + i)),
    st.sampled_from(["openai", "claude"]),
    st.sampled_from(["gpt-4o", "claude"]),
    st.integers(490_000, 491_000),
    st.integers(0, 50),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**12),
)
usage_flushes = st.builds(
    UsageRecorded,
    st.sampled_from(["n1", "n2"]),
    st.integers(1, 2),
    st.integers(1, 50),
    st.lists(deltas, max_size=4).map(tuple),
)
# A valid setup first, so random commands often hit existing keys, teams and providers.
SETUP = [
    CreateTeam("team_id0", "a", 10.0, "1mo"),
    AddProvider("a", "openai", "https://api.openai.com/v1", "env:OPENAI_API_KEY", ("gpt-4o", "m-1"), 2.0),
    CreateKey("key_id0", "a", "hash-a", "sk-shd-aaaa", ("gpt-4o",), 60, None, 5.0, "1d", "a", None),
    CreateKey("key_id1", "b", "hash-b", "sk-shd-bbbb"),
]
steps = st.lists(st.one_of(commands, commands, usage_flushes), min_size=1, max_size=40).map(
    lambda s: SETUP + s
)


async def run_steps(store: EventStore, steps: list[Any]) -> tuple[Projection, int]:
    """Apply each step live (decide + append, folding what was decided); returns the live
    projection and the number of refused commands."""
    codec = Codec()
    live = Projection()
    config_position = 0
    refused = 0
    for step in steps:
        if isinstance(step, UsageRecorded):
            result = await store.append(
                usage_stream(step.node_id), [NewEvent.of(step, codec)], AppendOptions()
            )
            apply_usage(live.usage, step)
            live.position = result.last_position
            continue
        try:
            events = decide(live.config, step)
        except CommandRejected:
            refused += 1
            continue
        result = await store.append(
            CONFIG_STREAM,
            [NewEvent.of(e, codec) for e in events],
            AppendOptions(metadata={"actor": "prop"}, expected_config_position=config_position),
        )
        for e in events:
            live.config = apply_config(live.config, e)
        config_position = live.position = result.last_position
    return live, refused


async def assert_replay_equals_live(store: EventStore, steps: list[Any]) -> int:
    live, refused = await run_steps(store, steps)
    replay = Projector(store, Projection())
    await replay.catch_up()
    assert replay.position == live.position == await store.head()
    assert replay.config == live.config
    assert replay.usage == live.usage
    assert isinstance(replay.usage, UsageState)
    return refused


# Responses input items: in the API's form or not, call ids that fit a native upstream's rule or not,
# the gateway's own reasoning and compaction items and others'
responses_call_ids = st.one_of(st.sampled_from(["call_1", "call_2", "c" * 64, "c" * 65]), st.integers(0, 3), st.none())
_item_text = st.text(max_size=6)
responses_items = st.one_of(
    st.fixed_dictionaries({"type": st.just("message"), "role": st.sampled_from(["user", "assistant"]),
                           "content": st.one_of(_item_text, st.just([{"type": "input_text", "text": "hi"}]))}),
    st.fixed_dictionaries({"role": st.just("user"), "content": _item_text}),  # a bare role item
    st.fixed_dictionaries({"type": st.sampled_from(["function_call", "custom_tool_call"]),
                           "call_id": responses_call_ids, "name": st.just("ls"), "arguments": st.just("{}")}),
    st.fixed_dictionaries({"type": st.sampled_from(["function_call_output", "custom_tool_call_output"]),
                           "call_id": responses_call_ids, "output": _item_text}),
    st.fixed_dictionaries({"type": st.just("reasoning"), "summary": st.just([])}, optional={
        "id": st.sampled_from(["rs_1", ITEM_PREFIX + "_ab"]),
        "encrypted_content": st.sampled_from(["", "gAAAA", PREFIX + "x", None])}),
    st.fixed_dictionaries({"type": st.just("compaction"), "encrypted_content": st.sampled_from(["gAAAA", SEAL + "x"])}),
    st.fixed_dictionaries({"type": st.integers(0, 2)}), st.integers(0, 2), _item_text)
