"""What remembering an agent's conversation costs a turn (`gateway/checked_histories.py`), apart from
reading its new entries: finding that the list starts with the bytes of the one before, and
keeping it for the next turn.

    python bench/bench_checked_histories.py [--agent-turns 60] [--turns 200] [--rounds 7]

Builds a coding agent's Responses input as the gateway bench sends it (`--agent-turns` tool calls
and results, about 66 kB at 60), then a conversation of `--turns` more turns, each the last one's
list with a call and its output added, and checks them in order under one key with a read that
finds nothing (so only the cache's own work is timed). Prints us per turn, best of `--rounds`, for:

- `crc`: the way before, the length and CRC-32 of what passed (a CRC of the head, of the whole
  remembered part, and carried over the new bytes);
- `bytes (body kept)`: CheckedHistories given the body (immutable `bytes`), kept as it is;
- `bytes (copied)`: CheckedHistories given a memoryview (a part of a body), copied once a turn.

Then the UTF-8 check of a chat and a Responses body of the gateway bench (`--agent-turns`): of the
whole body, as every turn did, and of what follows the remembered part only (the last 1.5 kB), as a
turn read on from it does now (`top_level.utf8_checked`).
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_gateway import agent_chat, agent_responses  # noqa: E402
from shieldes.gateway.checked_histories import CheckedHistories  # noqa: E402
from shieldes.gateway.top_level import check_utf8  # noqa: E402

HEAD = 256


def conversation(agent_turns: int, turns: int) -> list[bytes]:
    items: list[object] = agent_responses({"input": "go on"}, agent_turns)["input"]
    lists = []
    for i in range(turns):
        items = [*items, {"type": "function_call", "call_id": f"call_n{i}", "name": "shell",
                          "arguments": '{"command": "ls"}'},
                 {"type": "function_call_output", "call_id": f"call_n{i}", "output": "src tests docs"}]
        lists.append(orjson.dumps(items))
    return lists


def crc_turns(lists: list[bytes]) -> None:
    """The check as it was: the remembered part's CRC (head, then whole), carried over the new bytes."""
    length = head = crc = 0
    for raw in lists:
        view = memoryview(raw)
        size = len(view)
        start = 0
        if length and length < size and zlib.crc32(view[:min(HEAD, length)]) == head \
                and zlib.crc32(view[:length]) == crc:
            start = length
        else:
            crc = 0
        end = size - 1
        crc = zlib.crc32(view[start:end], crc) if start else zlib.crc32(view[:end])
        length, head = end, zlib.crc32(view[:min(HEAD, end)])


def _found(_data: memoryview, _before: bool | None) -> bool:
    return True


def bytes_turns(as_view: bool) -> Callable[[list[bytes]], None]:
    def run(lists: list[bytes]) -> None:
        checked: CheckedHistories[bool] = CheckedHistories(remember_from=0)
        for raw in lists:
            checked.check("key", memoryview(raw) if as_view else raw, _found)
    return run


def best(run: Callable[[list[bytes]], None], lists: list[bytes], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        run(lists)
        times.append(time.perf_counter() - began)
    return min(times) / len(lists) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent-turns", type=int, default=60)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    lists = conversation(args.agent_turns, args.turns)
    print(f"lists of {len(lists[0]):,} to {len(lists[-1]):,} bytes, {len(lists)} turns, best of {args.rounds}")
    for name, run in (("crc", crc_turns), ("bytes (body kept)", bytes_turns(False)),
                      ("bytes (copied)", bytes_turns(True))):
        print(f"  {name:<20} {best(run, lists, args.rounds):6.2f} us a turn")
    for api, body in (("chat", agent_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                                          args.agent_turns)),
                      ("responses", agent_responses({"model": "m", "input": "hi"}, args.agent_turns))):
        raw = orjson.dumps(body)
        whole = best(lambda bodies: [check_utf8(b) for b in bodies], [raw] * 1000, args.rounds)
        tail = best(lambda bodies: [check_utf8(b, len(b) - 1500) for b in bodies], [raw] * 1000, args.rounds)
        print(f"UTF-8 of a {api} body of {len(raw):,} bytes: whole {whole:.2f} us, the last 1.5 kB {tail:.2f} us")


if __name__ == "__main__":
    main()
