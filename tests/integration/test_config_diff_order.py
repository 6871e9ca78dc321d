"""A config diff from a later point to an earlier one is refused, in the words of the caller's own
names for the points (A and B on the CLI, from and to on the admin API), on every path a diff takes;
a diff lists its entities by kind and name (the console's "Diff from" reads it top to bottom)."""

from __future__ import annotations

import pytest

from shieldes.config_writer import execute
from shieldes.errors import InvalidRequest
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.commands import CreateKey
from shieldes.projections.shared_commands import SetPricing
from shieldes.snapshots.config_diff import scoped_diff
from shieldes.snapshots.history import Point
from tests.integration.usage_log import run_cli, seed_config


async def test_a_diff_from_a_later_point_is_refused_naming_both(database_url: str,
                                                               pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store, actor="alice")
    earlier = await pg_store.config_head()
    await execute(pg_store, SetPricing("gpt-4o", 3.0, 12.0), actor="bob")
    later = await pg_store.config_head()

    r = run_cli(database_url, "config", "diff", str(later), str(earlier))
    assert r.returncode == 1
    assert f"A (position {later}) is after B (position {earlier}); give the earlier point first" in r.stderr

    with pytest.raises(InvalidRequest) as info:
        await scoped_diff(pg_store, Codec(), Point(position=later), Point(position=earlier))
    assert info.value.message == (f"from (position {later}) is after to (position {earlier}); "
                                  "give the earlier point first")


async def test_a_diff_lists_entities_by_kind_and_name(pg_store: PostgresEventStore) -> None:
    start = await pg_store.config_head()
    # ids in the opposite order to the names: a list by id reads charlie, bravo, alpha
    for ident, name in (("key_c", "alpha"), ("key_b", "bravo"), ("key_a", "charlie")):
        await execute(pg_store, CreateKey(ident, name, f"hash-{name}", f"sk-{name}"), actor="alice")
    await execute(pg_store, SetPricing("gpt-4o", 3.0, 12.0), actor="bob")
    found = await scoped_diff(pg_store, Codec(), Point(position=start), Point(position=await pg_store.config_head()))
    assert found is not None
    assert [(c["kind"], c["name"]) for c in found[2]] == [
        ("pricing", "gpt-4o"), ("key", "alpha"), ("key", "bravo"), ("key", "charlie")], found[2]
