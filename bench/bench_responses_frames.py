"""CPU of forwarding one native Responses event stream (`NativeEvents.frames`, the upstream's bytes
to the client), in process: a coding agent's stream, whose response events echo 19 kB of
instructions and 12 tools, and a small one (the same events, small response objects).

    python bench/bench_responses_frames.py [--streams 300] [--rounds 5] [--tree DIR ...]

Each `--tree` (e.g. `git archive <commit> | tar -x -C DIR`) is measured the same way in a
subprocess, alternating with this tree, for a before/after in one run. Prints the best CPU per
stream over the rounds (the least disturbed by other work on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
IDS = {"item_id": "msg_1", "output_index": 0, "content_index": 0}


def stream_body(agent: bool) -> bytes:
    """An OpenAI Responses event stream: created, in progress, 20 text deltas, completed."""
    tools = [{"type": "function", "name": f"tool{i}", "description": "does a thing " * 20,
              "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}
             for i in range(12 if agent else 0)]
    instructions = "You are a careful coding agent. " * (600 if agent else 5)

    def response(status: str, usage: Any = None) -> dict[str, Any]:
        return {"id": "resp_1", "object": "response", "status": status, "instructions": instructions,
                "tools": tools, "previous_response_id": None, "output": [], "usage": usage}

    events: list[dict[str, Any]] = [{"type": "response.created", "response": response("in_progress")},
                                    {"type": "response.in_progress", "response": response("in_progress")}]
    events += [{"type": "response.output_text.delta", **IDS, "delta": "word ", "logprobs": []}] * 20
    events.append({"type": "response.completed",
                   "response": response("completed", {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13})})
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps({**e, "sequence_number": i}))
                    for i, e in enumerate(events))


class Reads:
    """An upstream body as the transport's read_chunk() gives it: these pieces, then b""."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    async def read_chunk(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def frames_of(native: Any) -> Any:
    """`native.frames()` as the Responses route reads it, in this tree or one from before it
    counted the delta events itself (then it gave (bytes, deltas) pairs)."""
    from shieldes.gateway.relay import Tally

    def bill(response: Any, _deltas: int) -> Any:
        return response

    if "counts" in inspect.signature(native.frames).parameters:
        return native.frames(bill, Tally())
    return native.frames(bill)


def measure(streams: int, rounds: int) -> dict[str, float]:
    from shieldes.providers.base import Target
    from shieldes.providers.openai_responses import ResponsesEventStream
    from shieldes.responses.objects import ResponseContext
    from shieldes.responses.upstream import NativeEvents

    # a tree from before 2026-12-06 10:00 took the request's ResponseContext, since its previous_response_id
    previous = None if "previous" in inspect.signature(NativeEvents).parameters else ResponseContext("resp_1", 0,
                                                                                                     "m", {})

    target = Target("d", "http://upstream.test/v1", "m", None)

    async def one(body: bytes) -> None:
        up = ResponsesEventStream(Reads([body[:3000], body[3000:]]), target)  # type: ignore[arg-type]
        await up.prime()
        native = NativeEvents(up, previous)
        async for _frames in frames_of(native):
            pass
        await native.aclose()

    async def run() -> dict[str, float]:
        out = {}
        for name, body in (("agent", stream_body(True)), ("small", stream_body(False))):
            for _ in range(streams // 5):
                await one(body)
            best = float("inf")
            for _ in range(rounds):
                t0 = time.process_time()
                for _ in range(streams):
                    await one(body)
                best = min(best, (time.process_time() - t0) / streams)
            out[name] = best * 1e6
        return out

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another source tree to measure")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.streams, args.rounds)))
        return
    print(f"agent stream {len(stream_body(True))} bytes, small stream {len(stream_body(False))} bytes")
    print("| tree | agent stream, us CPU | small stream, us CPU |")
    print("|---|---:|---:|")
    for _ in range(2):  # alternated: a busy moment of the machine does not fall on one tree only
        for tree in [ROOT, *args.tree]:
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--json", "--streams",
                                  str(args.streams), "--rounds", str(args.rounds)],
                                 env={**os.environ, "PYTHONPATH": str(tree.resolve())}, capture_output=True,
                                 text=True, check=True).stdout
            got = json.loads(out)
            print(f"| {'this tree' if tree == ROOT else tree} | {got['agent']:.0f} | {got['small']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
