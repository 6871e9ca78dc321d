"""What reading a coding agent's Responses turn costs the node (`responses/input_turns.py`): the body
read from where the key's last input ended, and its prompt bytes, as POST /v1/responses reads a
body of 16 kB or more whose input goes upstream as sent.

    PYTHONPATH=. python bench/bench_input_turns.py [--agent-turns 60] [--rounds 9] [--tree DIR ...]

Two bodies, each sent again and again under one key (the part remembered is the whole input):
the gateway bench's (`bench_gateway.py --agent-turns`: the input first, then the instructions and
tools) and one in Codex's order (20 kB of instructions ahead of the same input). Prints us per
turn, best of `--rounds`. Each `--tree` (e.g. `git worktree add --detach DIR <commit>`) runs the
same in its own process, for a before/after in one run; a tree from before the turn read counted
the prompt bytes itself is timed with that count (usage.tokens.prompt_bytes over the whole body).
For a count that the machine's load does not move, run it under `valgrind --tool=callgrind`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def bodies(turns: int) -> dict[str, bytes]:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_gateway as bg

    body = bg.agent_responses(bg.RESPONSES_BODY, turns)
    codex = {"model": "gpt-5", "instructions": "You are Codex, a coding agent. " * 650, "input": body["input"],
             "tools": body["tools"], "store": False, "stream": True}
    return {"bench": json.dumps(body).encode(), "codex": json.dumps(codex).encode()}


def measure(turns: int, rounds: int) -> dict[str, float]:
    sys.path.insert(0, os.getcwd())
    from shieldes.gateway.checked_histories import CheckedHistories
    from shieldes.gateway.top_level import utf8_checked
    from shieldes.responses import input_turns
    from shieldes.usage.tokens import prompt_bytes

    counted = "size" in input_turns.TurnRead.__slots__  # (the turn read counts the prompt bytes)
    checks = hasattr(input_turns, "check_utf8")  # (the turn read checks the UTF-8 itself)
    weigh = getattr(input_turns, "weigh", lambda found: len(found.calls))
    out = {}
    for name, raw in bodies(turns).items():
        checked: Any = CheckedHistories(weigh, end=lambda found: found.end)

        def turn(raw: bytes = raw, checked: Any = checked) -> int:
            read = input_turns.TurnRead(raw)
            found = checked.check("key", raw, read if checks else utf8_checked(raw, read))
            assert found is not None
            return int(read.size) if counted else prompt_bytes(raw)

        turn()
        n = 2000
        out[name] = min(timeit.repeat(turn, number=n, repeat=rounds)) / n * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent-turns", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tree", action="append", default=[], type=Path)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # (a tree's own process)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.agent_turns, args.rounds)))
        return
    results = {"this tree": measure(args.agent_turns, args.rounds)}
    for tree in args.tree:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--json", "--agent-turns",
                               str(args.agent_turns), "--rounds", str(args.rounds)], cwd=tree, check=True,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
        results[str(tree)] = json.loads(done.stdout)
    print(f"{'tree':40} {'bench body us':>14} {'Codex-shaped us':>16}")
    for name, got in results.items():
        print(f"{name:40} {got['bench']:14.1f} {got['codex']:16.1f}")


if __name__ == "__main__":
    main()
