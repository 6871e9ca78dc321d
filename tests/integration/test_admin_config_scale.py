"""Time travel on a node holding many keys: `GET /admin/v1/config/diff` folds the config stream a
page at a time, so the node keeps answering while it runs (it folded the whole stream twice in one
go, holding every request for half a minute at 100,000 keys)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from shieldes.events.catalog import CONFIG_STREAM, BudgetSet, VirtualKeyCreated
from shieldes.events.codec import Codec
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.commands import CreateTeam
from shieldes.secrets import hash_key
from shieldes.snapshots.history import config_view
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import Harness, harness

TOKEN = "config-scale-admin-token-0123456789"
API = "/admin/v1"


async def seed_keys(h: Harness, count: int, batch: int = 5000, budget_every: int = 0) -> None:
    """`count` keys appended straight to the log, `batch` keys an append; every `budget_every`th
    with a budget."""
    codec = Codec()
    for start in range(0, count, batch):
        events = [NewEvent.of(e, codec) for i in range(start, min(count, start + batch)) for e in (
            VirtualKeyCreated(f"key_{i:08x}", f"app-{i:06d}", hash_key(f"sk-{i}"), "sk-shd-seed", None),
            *((BudgetSet("key", f"key_{i:08x}", 5.0, "1d"),) if budget_every and i % budget_every == 0 else ()))]
        await h.store.append(CONFIG_STREAM, events, AppendOptions(metadata={"actor": "seed"}))


async def slowest_health(base: str, done: asyncio.Event) -> float:
    """The longest `GET /health` took while `done` is unset (one after another)."""
    worst = 0.0
    async with aiohttp.ClientSession() as s:
        while not done.is_set():
            started = time.perf_counter()
            async with s.get(base + "/health") as r:
                await r.read()
            worst = max(worst, time.perf_counter() - started)
    return worst


async def test_a_diff_over_many_keys_leaves_the_node_answering(database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        await seed_keys(h, 30_000)
        await h.sync()
        api = AdminClient(h.base, TOKEN)
        position = h.node.projector.position

        done = asyncio.Event()
        probe = asyncio.create_task(slowest_health(h.base, done))
        await asyncio.sleep(0.05)  # the probe is on its way
        started = time.perf_counter()
        # over more events than the scoped read takes (config_diff.SCOPED_MAX_EVENTS): the whole fold
        status, d = await api.get(f"{API}/config/diff", **{"from": str(position - 12_000)})
        took = time.perf_counter() - started
        done.set()
        worst = await probe
        status3, d3 = await api.get(f"{API}/config/diff", **{"from": str(position - 3)})

    assert status == 200 and d["events"] == 12_000 and len(d["changes"]) == 12_000, d["events"]
    assert status3 == 200 and d3["events"] == 3
    assert [c["name"] for c in d3["changes"]] == ["app-029997", "app-029998", "app-029999"]
    # a fold of 30,000 events in one go held /health for about as long as the diff took; a page of
    # them is a small part of it (a ratio, so a loaded machine slowing both does not decide it)
    assert worst < took / 3, (worst, took)


async def test_the_config_lists_the_first_keys_by_name_when_asked(database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        await seed_keys(h, 12, batch=5)
        await h.sync()
        api = AdminClient(h.base, TOKEN)
        status, whole = await api.get(f"{API}/config")
        status_now, now = await api.get(f"{API}/config", keys_limit=5)
        status_then, then = await api.get(f"{API}/config", keys_limit=5, at=str(h.node.projector.position - 7))
        refused = [await api.get(f"{API}/config", keys_limit=n) for n in (0, 10_001, "many")]

    assert status == 200 and len(whole["keys"]) == 12 and "keys_total" not in whole
    assert status_now == 200 and [k["name"] for k in now["keys"]] == [f"app-{i:06d}" for i in range(5)]
    assert now["keys_total"] == 12 and now["keys"][0] == next(k for k in whole["keys"] if k["name"] == "app-000000")
    assert now["providers"] == whole["providers"] and now["teams"] == whole["teams"]
    assert status_then == 200 and then["keys_total"] == 5 and len(then["keys"]) == 5  # as of the first append
    for status, err in refused:
        assert status == 400 and err["error"]["code"] == "invalid_request", err
    assert "keys_limit must be between 1 and 10000" in refused[0][1]["error"]["message"]


async def test_the_whole_config_of_many_keys_leaves_the_node_answering(database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        await seed_keys(h, 30_000)
        await h.admin(CreateTeam("team_eng", "eng"))
        await h.sync()

        done = asyncio.Event()
        probe = asyncio.create_task(slowest_health(h.base, done))
        await asyncio.sleep(0.05)  # the probe is on its way
        started = time.perf_counter()
        async with aiohttp.ClientSession() as s, s.get(h.base + f"{API}/config",
                                                       headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            status, body = r.status, await r.read()  # decoded after: this loop is the node's too
        took = time.perf_counter() - started
        done.set()
        worst = await probe
        whole = orjson.loads(body)
        expected = {"at": "now", "position": h.node.projector.position, **config_view(h.node.projector.config)}

    assert status == 200 and whole == orjson.loads(orjson.dumps(expected))  # the same answer as built in one go
    assert len(whole["keys"]) == 30_000 and [t["name"] for t in whole["teams"]] == ["eng"]
    # built in one go, the answer held /health for about as long as it took; a slice of keys at a
    # time, a small part of it (a ratio, so a loaded machine slowing both does not decide it)
    assert worst < took / 3, (worst, took)


async def test_key_lists_that_walk_every_key_and_every_budget_leave_the_node_answering(database_url: str) -> None:
    """The budgets answer reads every budgeted key (and a filter few keys match walks every name):
    in a thread (and their views a slice at a time), not on the node's event loop, which held
    every request for 14 s (`status=revoked`, now read from its column) and 5 s (every budget) at
    a million keys."""
    async with harness(database_url, admin_token=TOKEN) as h:
        await seed_keys(h, 30_000, budget_every=2)
        await h.sync()
        status, _ = await AdminClient(h.base, TOKEN).post(f"{API}/snapshots")
        assert status == 201
    # a node started from that snapshot holds its keys as columns, as a large cluster's nodes do
    async with harness(database_url, admin_token=TOKEN, providers=False) as h:
        found: dict[str, tuple[int, bytes, float, float]] = {}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
            for path in ("/keys?status=revoked", "/budgets", "/keys?search=APP-02999&limit=10000"):
                done = asyncio.Event()
                probe = asyncio.create_task(slowest_health(h.base, done))
                await asyncio.sleep(0.05)  # the probe is on its way
                started = time.perf_counter()
                async with s.get(h.base + API + path) as r:
                    status, body = r.status, await r.read()  # decoded after: this loop is the node's too
                took = time.perf_counter() - started
                done.set()
                found[path] = (status, body, took, await probe)

    # the revoked keys are read from their column (none here), not found by a walk over every key
    status, body, _, _ = found["/keys?status=revoked"]
    assert status == 200 and orjson.loads(body)["data"] == []
    # a ratio, so a loaded machine slowing both does not decide it: on the loop /health waited for
    # about all of it; in a thread, for the switches between the two (5 ms each) and a slice of views
    status, body, took, worst = found["/budgets"]
    assert status == 200 and len(orjson.loads(body)["data"]) == 15_000
    assert worst < took / 2, (worst, took)
    status, body, _, _ = found["/keys?search=APP-02999&limit=10000"]  # any case, names passed over unread
    assert [k["name"] for k in orjson.loads(body)["data"]] == [f"app-{i:06d}" for i in range(29_990, 30_000)]


async def test_the_config_at_a_point_with_no_config_event_since_is_the_nodes_own(database_url: str) -> None:
    """`config?at=P` where no config event follows P is the config the node holds: it decoded the
    newest snapshot and folded the tail for it (8 s at a million keys). A point before the last
    config event is still folded from the log (an event edited in place there shows only in it)."""
    import psycopg

    async with harness(database_url, admin_token=TOKEN) as h:
        await seed_keys(h, 6, batch=3)
        await h.sync()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE events SET data = jsonb_set(data, '{name}', '\"edited-in-the-log\"')"
                         " WHERE type = 'virtual_key.created' AND data->>'id' = 'key_00000000'")
        api = AdminClient(h.base, TOKEN)
        head = h.node.projector.position
        answers = {at: await api.get(f"{API}/config", at=str(at), keys_limit=10) for at in (head, head - 1)}
        now = await api.get(f"{API}/config", keys_limit=10)

    status, at_head = answers[head]
    assert status == 200 and at_head["position"] == head and at_head["recorded_at"]
    assert at_head["keys"] == now[1]["keys"] and at_head["keys"][0]["name"] == "app-000000"
    status, before = answers[head - 1]
    assert status == 200 and before["position"] == head - 1 and before["keys_total"] == 5
    assert "edited-in-the-log" in [k["name"] for k in before["keys"]]


async def test_a_snapshot_taken_through_the_admin_api_is_sealed_for_the_cluster(database_url: str) -> None:
    """`POST /admin/v1/snapshots` seals the snapshot with the cluster secret, as the scheduler and
    `shieldes snapshot create` do: it wrote an unsealed one, which no node or CLI of a cluster with
    a secret loads (they fold the whole log instead), and which pruned a sealed one from the kept."""
    from shieldes.snapshots.config_start import config_from_snapshot
    from shieldes.snapshots.seal import mac_key

    secret = "admin-snapshot-cluster-secret"
    async with harness(database_url, admin_token=TOKEN, cluster_secret=secret) as h:
        await seed_keys(h, 5)
        await h.sync()
        status, snap = await AdminClient(h.base, TOKEN).post(f"{API}/snapshots")
        loaded = await config_from_snapshot(h.store.connections, mac_key(secret))
        config = h.node.projector.config

    assert status == 201, snap
    assert loaded is not None and loaded.state.keys.keys() == config.keys.keys()
