"""CPU of reading one upstream stream the way the node relays it, in process, for each API: chat
(`OpenAIChunkStream.frames`, for a client that asked for usage and one that did not: the node then
strips it), Anthropic Messages (`NativeEventStream`, byte for byte with its usage read on the side)
and Responses (`NativeEvents.frames`). The streams are the gateway bench's own: the bytes the fake
upstream (tests/fake_upstream.py, 20 tokens) sends for bench_gateway.py's bodies, read in one piece
and cut one event to a read (an upstream sending token by token).

    PYTHONPATH=. python bench/bench_stream_frames.py [--streams 2000] [--rounds 7] [--tree DIR ...]

Each `--tree` (e.g. `git archive <commit> | tar -x -C DIR`) is measured the same way in a
subprocess, alternating with this tree, for a before/after in one run. Prints the best CPU per
stream (process time) over the rounds, the least disturbed by other work on the machine.
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
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_responses_frames import Reads, frames_of  # noqa: E402

CASES = ("chat", "chat-strip", "messages", "responses")


def upstream_streams() -> dict[str, bytes]:
    """What the gateway bench's fake upstream answers the node for each API's stream."""
    import bench_gateway as bg  # (puts this tree first on sys.path: only the parent process imports it)

    port = bg.free_port()
    up = bg.spawn(["-m", "tests.fake_upstream", "--port", str(port), "--completion-tokens", "20"])
    try:
        bg.wait_port(port)
        asks = {  # as the node sends them: a chat stream asks for usage
            "chat": ("/v1/chat/completions", {**bg.BODY, "stream": True, "stream_options": {"include_usage": True}}),
            "messages": ("/v1/messages", {**bg.MESSAGES_BODY, "stream": True}),
            "responses": ("/v1/responses", bg.RESPONSES_BODY),
        }
        out = {}
        for name, (path, body) in asks.items():
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers={
                "Content-Type": "application/json", "Authorization": "Bearer x", "x-api-key": "x",
                "anthropic-version": "2023-06-01"})
            with urllib.request.urlopen(req) as resp:
                out[name] = resp.read()
        return out
    finally:
        up.terminate()
        up.wait()


def events(body: bytes) -> list[bytes]:
    parts = body.split(b"\n\n")
    return [p + b"\n\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def measure(bodies: dict[str, bytes], streams: int, rounds: int) -> dict[str, float]:
    from shieldes.gateway import relay
    from shieldes.gateway.messages import _Native
    from shieldes.gateway.relay import Tally
    from shieldes.providers.anthropic_native import NativeEventStream
    from shieldes.providers.base import Target
    from shieldes.providers.openai_responses import ResponsesEventStream
    from shieldes.providers.openai_stream import OpenAIChunkStream
    from shieldes.responses.objects import ResponseContext
    from shieldes.responses.upstream import NativeEvents

    # a tree from before 2026-12-06 10:00 took the request's ResponseContext, since its previous_response_id
    previous = None if "previous" in inspect.signature(NativeEvents).parameters else ResponseContext("resp_1", 0,
                                                                                                     "m", {})

    target = Target("d", "http://upstream.test/v1", "m", None)

    # A tree from before 2026-12-06 03:30 counted the frames in a layer of the relay's own
    # (relay.counted_frames over frames(strip)); since, frames() counts them itself.
    counted = len(inspect.signature(OpenAIChunkStream.frames).parameters) > 2

    async def chat(pieces: list[bytes], strip: bool) -> None:
        up = OpenAIChunkStream(Reads(pieces), target)  # type: ignore[arg-type]
        await up.prime()
        frames = up.frames(Tally(), strip) if counted else relay.counted_frames(  # type: ignore[attr-defined]
            up.frames(strip), Tally())  # type: ignore[call-arg]
        async for _frames in frames:
            pass

    async def messages(pieces: list[bytes]) -> None:
        up = NativeEventStream(Reads(pieces), target)  # type: ignore[arg-type]
        await up.prime()
        async for _data in _Native(up, str).frames(Tally()):  # (as the Messages route relays it)
            pass

    async def responses(pieces: list[bytes]) -> None:
        up = ResponsesEventStream(Reads(pieces), target)  # type: ignore[arg-type]
        await up.prime()
        native = NativeEvents(up, previous)
        async for _frames in frames_of(native):
            pass
        await native.aclose()

    readers: dict[str, Callable[[list[bytes]], Awaitable[None]]] = {
        "chat": lambda p: chat(p, False), "chat-strip": lambda p: chat(p, True),
        "messages": messages, "responses": responses}

    async def run() -> dict[str, float]:
        out = {}
        for case in CASES:
            body = bodies[case.split("-")[0]]
            for cut, pieces in (("whole", [body]), ("per event", events(body))):
                read = readers[case]
                for _ in range(streams // 5):
                    await read(list(pieces))
                best = float("inf")
                for _ in range(rounds):
                    t0 = time.process_time()
                    for _ in range(streams):
                        await read(list(pieces))
                    best = min(best, (time.process_time() - t0) / streams)
                out[f"{case} {cut}"] = best * 1e6
        return out

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another source tree to measure")
    parser.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bodies:  # a tree's own measurement, in its own process
        bodies = {k: bytes.fromhex(v) for k, v in json.loads(args.bodies.read_text()).items()}
        print(json.dumps(measure(bodies, args.streams, args.rounds)))
        return
    bodies = upstream_streams()
    print(", ".join(f"{name} {len(body)} bytes ({len(events(body))} events)" for name, body in bodies.items()))
    saved = Path(os.environ.get("TMPDIR", "/tmp")) / f"stream_frames_{os.getpid()}.json"
    saved.write_text(json.dumps({k: v.hex() for k, v in bodies.items()}))
    try:
        rows: dict[str, list[dict[str, float]]] = {}
        for _ in range(2):  # alternated: a busy moment of the machine does not fall on one tree only
            for tree in [ROOT, *args.tree]:
                out = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--bodies", str(saved), "--streams",
                     str(args.streams), "--rounds", str(args.rounds)],
                    env={**os.environ, "PYTHONPATH": str(tree.resolve())}, capture_output=True, text=True,
                    check=True).stdout
                rows.setdefault("this tree" if tree == ROOT else str(tree), []).append(json.loads(out))
    finally:
        saved.unlink()
    names = list(next(iter(rows.values()))[0])
    print("| stream, read | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{min(r[name] for r in runs):.1f} us" for runs in rows.values()) + " |")


if __name__ == "__main__":
    main()
