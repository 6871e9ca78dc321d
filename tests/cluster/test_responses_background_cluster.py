"""Background responses across real node processes, through the official openai SDK: created on
node a, read, followed and cancelled on node b; a run whose node is SIGKILLed reads `failed` on
the other within the stated bound (node_timeout, 1.5 s here, plus a heartbeat); a node stopped
with SIGTERM stops its runs at the end of its grace and says so. The fake upstream runs in this
process, so the test holds a stream and sees whether the node closed it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests import pg
from tests.cluster.harness import UPSTREAM_KEY_ENV, Cluster, until
from tests.fake_upstream import FakeUpstream
from tests.resilience.threaded_upstream import threaded_upstream

pytestmark = pytest.mark.cluster
CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
NODE_TIMEOUT = 1.5  # the harness's SHIELDES_NODE_TIMEOUT
HEARTBEAT = 0.2  # the harness's SHIELDES_HEARTBEAT_INTERVAL


@contextmanager
def cluster_with(pg_server: str, tmp: Path) -> Iterator[tuple[Cluster, FakeUpstream]]:
    url = pg.fresh_database(pg_server)
    c = Cluster(url, tmp)
    try:
        with threaded_upstream(completion_tokens=5, models=(MODEL,)) as up:
            c.admin(AddProvider("openai", "openai", up.url, f"env:{UPSTREAM_KEY_ENV}", (MODEL,)))
            for name in ("a", "b"):
                c.start(c.add_node(name))
            for node in c.nodes:
                c.wait_ready(node)
            try:
                yield c, up
            finally:
                c.stop_all()
    finally:
        pg.drop_database(pg_server, url)


def clients(c: Cluster, name: str) -> tuple[openai.OpenAI, openai.OpenAI]:
    secret, created = c.create_key(name)
    c.wait_position(created)
    a, b = (openai.OpenAI(base_url=n.base + "/v1", api_key=secret, max_retries=0, timeout=20) for n in c.nodes)
    return a, b


def held(up: FakeUpstream, client: openai.OpenAI, hold_after: int) -> tuple[Any, Any]:
    """A background response created with `client`, held at the upstream after `hold_after` frames."""
    hold = up.inject(CHAT, hold_after=hold_after)
    made = client.responses.create(model=MODEL, input="a long essay", background=True)
    until(lambda: hold.holding == 1, 10, "the run reached the upstream")
    return hold, made


def follow(client: openai.OpenAI, response_id: str, out: list[Any],
           starting_after: int | None = None) -> threading.Thread:
    def run() -> None:
        kw = {} if starting_after is None else {"starting_after": starting_after}
        for event in client.responses.retrieve(response_id, stream=True, **kw):
            out.append(event)
        out.append(None)  # the end

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_created_on_one_node_read_followed_and_cancelled_on_another(pg_server: str, tmp_path: Path) -> None:
    with cluster_with(pg_server, tmp_path) as (c, up):
        a, b = clients(c, "bg")
        hold, made = held(up, a, 3)
        until(lambda: b.responses.retrieve(made.id).status == "in_progress", 10, "b reads its row")  # within a TICK
        events: list[Any] = []
        follower = follow(b, made.id, events)
        until(lambda: any(e is not None and e.type == "response.in_progress" for e in events), 10, "b follows")
        gone = b.responses.cancel(made.id)
        assert gone.status == "cancelled" and gone.id == made.id
        until(lambda: hold.dropped == 1, 10, "the upstream call closed by node a")
        assert b.responses.cancel(made.id).status == "cancelled"  # idempotent, on either node
        assert a.responses.cancel(made.id).status == "cancelled"
        assert a.responses.retrieve(made.id).status == "cancelled"
        follower.join(10)
        assert events[-1] is None and [e.sequence_number for e in events[:-1]] == list(range(len(events) - 1))

        # one that completes: b replays it from any point and refuses to cancel it, as OpenAI does
        hold, made = held(up, a, 2)
        live: list[Any] = []
        follower = follow(b, made.id, live, starting_after=0)
        until(lambda: len(live) >= 1, 10, "b replays what ran so far")
        hold.release.set()
        follower.join(15)
        assert live[-1] is None and live[-2].type == "response.completed"
        assert [e.sequence_number for e in live[:-1]] == list(range(1, len(live)))
        assert b.responses.retrieve(made.id).output_text == live[-2].response.output_text
        with pytest.raises(openai.BadRequestError) as finished:
            b.responses.cancel(made.id)
        assert "Cannot cancel a completed response." in finished.value.message


def test_a_run_whose_node_was_killed_reads_failed_within_the_bound(pg_server: str, tmp_path: Path) -> None:
    with cluster_with(pg_server, tmp_path) as (c, up):
        a, b = clients(c, "bg")
        _hold, made = held(up, a, 2)
        until(lambda: b.responses.retrieve(made.id).status == "in_progress", 10, "b reads its row")
        events: list[Any] = []
        follower = follow(b, made.id, events)
        until(lambda: len(events) >= 2, 10, "b follows the run")
        c.kill(c.nodes[0], signal.SIGKILL)
        killed = time.monotonic()
        failed = until(lambda: (r := b.responses.retrieve(made.id)).status == "failed" and r, 10, "failed on b")
        took = time.monotonic() - killed
        assert took <= NODE_TIMEOUT + 2 * HEARTBEAT + 1.0, took  # the bound (+1 s for this machine's load)
        assert failed.error is not None and "create it again" in failed.error.message
        assert "(a)" in failed.error.message
        follower.join(10)
        assert events[-1] is None and events[-2].type == "response.failed"
        assert events[-2].sequence_number == events[-3].sequence_number + 1
        with pytest.raises(openai.BadRequestError) as refused:
            b.responses.cancel(made.id)
        assert "Cannot cancel a failed response." in refused.value.message


def test_a_draining_node_stops_its_runs_at_the_end_of_its_grace(pg_server: str, tmp_path: Path) -> None:
    with cluster_with(pg_server, tmp_path) as (c, up):
        a, b = clients(c, "bg")
        hold, made = held(up, a, 2)
        c.kill(c.nodes[0], signal.SIGTERM)  # waits for the process: its grace is 2 s
        assert hold.dropped == 1
        failed = b.responses.retrieve(made.id)
        assert failed.status == "failed" and failed.error is not None
        assert "was shut down" in failed.error.message and "create it again" in failed.error.message
        events = list(b.responses.retrieve(made.id, stream=True))
        assert events[-1].type == "response.failed"
