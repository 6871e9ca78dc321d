"""Support for routing tests on real node processes: fake upstreams served from a thread of the
test process (so a test can slow one down, make it fail or read what it received while the nodes
call it), and traffic driven through every node with the official SDK, each request marked with
the node it entered by so an upstream's record tells which node sent it."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import openai

from tests.fake_upstream import FakeUpstream

T = TypeVar("T")
PATH = "/v1/chat/completions"
MARK = "sent-through-"


class ThreadedUpstreams:
    """FakeUpstreams on one event loop in a background thread; `call` runs a function there."""

    def __init__(self, **upstreams: dict[str, Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-upstreams", daemon=True)
        self._thread.start()
        self.by_name: dict[str, FakeUpstream] = {}
        for name, options in upstreams.items():
            self.by_name[name] = self._run(FakeUpstream(**options).start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def __getitem__(self, name: str) -> FakeUpstream:
        return self.by_name[name]

    def call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        result: T = self._run(run())
        return result

    def received(self, name: str, model: str) -> Counter[str]:
        """Requests upstream `name` received for `model`, by the node they entered through."""

        def count() -> Counter[str]:
            out: Counter[str] = Counter()
            for r in self.by_name[name].requests_to(PATH):
                body = r.body if isinstance(r.body, dict) else {}
                if body.get("model") == model:
                    text = str(body["messages"][0]["content"])
                    out[text.split(MARK, 1)[1].split()[0] if MARK in text else "?"] += 1
            return out

        return self.call(count)

    def close(self) -> None:
        for up in self.by_name.values():
            self._run(up.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


async def _drive(nodes: Sequence[tuple[str, str]], key: str, model: str, per_node: int,
                 in_flight: int) -> Counter[int]:
    """`per_node` requests through each (node id, base url), `in_flight` at a time per node;
    returns the HTTP statuses the clients saw."""
    statuses: Counter[int] = Counter()

    async def node(node_id: str, base: str) -> None:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=30)
        gate = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with gate:
                try:
                    await client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": f"hi {MARK}{node_id} there"}])
                    statuses[200] += 1
                except openai.APIStatusError as exc:
                    statuses[exc.status_code] += 1

        try:
            await asyncio.gather(*(one() for _ in range(per_node)))
        finally:
            await client.close()

    await asyncio.gather(*(node(n, b) for n, b in nodes))
    return statuses


def drive(nodes: Sequence[tuple[str, str]], key: str, model: str, per_node: int, in_flight: int = 4) -> Counter[int]:
    return asyncio.run(_drive(nodes, key, model, per_node, in_flight))


def shares(before: dict[str, Counter[str]], after: dict[str, Counter[str]], upstream: str,
           node_ids: Sequence[str]) -> dict[str, float]:
    """Per node: the share of the requests it sent in between that went to `upstream`."""
    out = {}
    for n in node_ids:
        sent = {u: after[u][n] - before[u][n] for u in after}
        total = sum(sent.values())
        out[n] = sent[upstream] / total if total else 0.0
    return out
