"""An event this release cannot read (a newer release wrote it: a rolling upgrade under way) is
refused on every path that needs it in one clear error, `unknown_event`, that says to upgrade:
the admin API's config reads answer 503 in their JSON shape (not a 500 "internal error"), and the
CLI prints one line that says it once. The node itself keeps serving (its projection skips the
event and lists it on /ready: tests/cluster/test_rolling_upgrade.py)."""

from __future__ import annotations

import asyncio

from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.pg_store import PostgresEventStore
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.shared_commands import SetPricing
from tests import cli
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness

BOOT = "unknown-event-bootstrap-token-0123456789"
UPGRADE = "upgrade shieldes to read this log"


async def append_from_a_newer_release(store: PostgresEventStore) -> int:
    """A config event of a type this release lacks, as a newer release's CLI appends it (one that
    does not check what live nodes read: a negative node timeout sees none alive)."""
    unchecked = PostgresEventStore(store.connections, node_timeout=-3600)
    result = await unchecked.append(CONFIG_STREAM, [NewEvent("key_group.created", 1, {"group_id": "g1", "name": "g"})],
                                AppendOptions(metadata={"actor": "newer-cli"}))
    return result.last_position


async def test_what_needs_an_unknown_event_is_refused_in_one_clear_error(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT, providers=False) as h:
        await h.admin(SetPricing("gpt-4o", 3.0, 12.0))
        before = await h.store.config_head()
        position = await append_from_a_newer_release(h.store)
        await h.sync()
        admin = AdminClient(h.base, BOOT)
        status, body = await admin.get("/admin/v1/config/diff", **{"from": before, "to": position})
        assert status == 503, (status, body)
        error = body["error"]
        assert error["code"] == "unknown_event" and error["type"] == "server_error", body
        assert "unknown event type 'key_group.created'" in error["message"], body
        assert error["message"].count(UPGRADE) == 1, body
        # what does not need it is served: the node's own view (it skipped the event) and the writes
        # checked against it, the audit trail
        assert (await admin.get("/admin/v1/config"))[0] == 200
        assert (await admin.get("/admin/v1/audit"))[0] == 200
        assert (await admin.call("PUT", "/admin/v1/pricing/gpt-4o", {"input_per_1m": 4.0, "output_per_1m": 12.0}))[0] \
            == 200

    # the CLI's direct writes fold the log themselves: refused, in one line that says it once
    for args in (("config", "diff", str(before), str(position)),
                 ("pricing", "set", "gpt-4o", "--input", "4", "--output", "12")):
        line = await asyncio.to_thread(cli.refused, database_url, *args)
        assert "unknown event type 'key_group.created'" in line and line.count(UPGRADE) == 1, line
