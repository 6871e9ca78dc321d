"""A config diff from a later point to an earlier one is refused, in the words of the caller's own
names for the points (A and B on the CLI, from and to on the admin API), on every path a diff takes."""

from __future__ import annotations

import pytest

from shieldes.config_writer import execute
from shieldes.errors import InvalidRequest
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore
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
