"""Conversations: the latency and node CPU a Responses turn adds when it names a `conversation`
(its items read from Postgres before the upstream call, the turn's items appended before the
answer ends), against the same turn continuing a `previous_response_id` the node holds in memory
and the same turn with neither (the history sent as its input), on a real node with the fake
upstream and the test Postgres (bench/bench_responses.py's).

    PYTHONPATH=. python bench/bench_conversations.py [--turns 200] [--rounds 3]

Every variant sends the upstream the same body: two history items and the new message. The turns
of the three variants alternate, one of each in turn, so load from other work on the machine falls
on all three alike. Node CPU is the CPU time of the node's event-loop thread (the node runs in a
thread of its own, beside the fake upstream, which answers all three alike; Postgres's own CPU is
not in it). Prints p50/p95 latency and the mean node CPU per turn, and what each adds to a
turn with neither.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_responses import _pct, bench_node
from tests.integration.test_responses_api import oai

T = TypeVar("T")
FIRST = "My name is Ada."
VARIANTS = ("neither", "previous_response_id", "conversation")


class NodeThread:
    """A node on an event loop of its own thread, so its CPU is that thread's and not the client's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="node", daemon=True)
        self.thread.start()
        self.stack = AsyncExitStack()

    def call(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def cpu(self) -> float:
        assert self.thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self.thread.ident))

    def stop(self) -> None:
        self.call(self.stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


async def measure(turns: int, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    node = NodeThread()
    try:
        h, secret = node.call(node.stack.enter_async_context(bench_node()))
        client = oai(h.base, secret).with_options(timeout=60)
        first = await client.responses.create(model="gpt-4o", input=FIRST)
        history: list[Any] = [{"role": "user", "content": FIRST},
                              {"role": "assistant", "content": first.output_text}]
        out: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in VARIANTS}
        for _ in range(rounds):
            # a conversation per turn, made before the timed turns: each turn reads two items, as the others send
            conversations = [(await client.conversations.create(items=history)).id for _ in range(turns)]
            for i in range(turns):
                question = f"what is my name? {i}"
                for name in VARIANTS:
                    if name == "neither":
                        turn = client.responses.create(model="gpt-4o",
                                                       input=[*history, {"role": "user", "content": question}])
                    elif name == "previous_response_id":
                        turn = client.responses.create(model="gpt-4o", input=question, previous_response_id=first.id)
                    else:
                        turn = client.responses.create(model="gpt-4o", input=question, conversation=conversations[i])
                    cpu, began = node.cpu(), time.perf_counter()
                    await turn
                    latency, used = time.perf_counter() - began, node.cpu() - cpu
                    out[name][0].append(latency * 1000)
                    out[name][1].append(used * 1e6)
        await client.close()
        return out
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    out = asyncio.run(measure(args.turns, args.rounds))
    base_ms, base_us = _pct(out["neither"][0], 0.5), statistics.fmean(out["neither"][1])
    print(f"{'turn':22} {'latency p50':>12} {'p95':>10} {'added p50':>10} {'node CPU/turn':>14} {'added':>9}")
    for name in VARIANTS:
        ms, us = out[name]
        cpu = statistics.fmean(us)
        print(f"{name:22} {_pct(ms, 0.5):9.2f} ms {_pct(ms, 0.95):7.2f} ms {_pct(ms, 0.5) - base_ms:+7.2f} ms "
              f"{cpu:11.0f} us {cpu - base_us:+6.0f} us")
    print(f"({len(out['neither'][0])} turns each, alternating; load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end)")


if __name__ == "__main__":
    main()
