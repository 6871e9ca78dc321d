"""What reading a Messages request costs the node before it is relayed (`gateway/messages_turns.py`):
its split into top-level fields, its UTF-8 check, its prompt bytes and its tool call ids' check.

    python bench/bench_messages_turns.py [--agent-turns 60] [--image-kb 2048] [--rounds 7]

For the gateway bench's Messages bodies (bench_gateway.py: a coding agent's turn of `--agent-turns`
tool calls, the same with a `--image-kb` screenshot in its last user turn, and the screenshot
alone), prints us per request, best of `--rounds`:

- `whole`: the body read as every turn was before (TopLevel: UTF-8 pass, split, small fields
  decoded; prompt_bytes over the body; the regex over the history's every byte);
- `first turn`: read_messages on a key with nothing remembered (the same, the list located for
  the next turn, the ids' regex leaving out runs without a quote);
- `same turn again`: the body sent again (its remembered part compared, nothing else read);
- `next turn`: the body with a tool call and its result added before the closing bracket of its
  messages, the fields after the list unchanged (only the new messages read).
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_gateway import MESSAGES_BODY, MESSAGES_PATH, agent_messages, with_image  # noqa: E402
from shieldes.gateway import messages_turns  # noqa: E402
from shieldes.gateway.checked_histories import CheckedHistories  # noqa: E402
from shieldes.gateway.messages_turns import MessagesTopLevel, Turn, read_messages  # noqa: E402
from shieldes.gateway.top_level import MESSAGES_HISTORY, TopLevel  # noqa: E402
from shieldes.providers.tool_ids import anthropic_ids_fit_in  # noqa: E402
from shieldes.usage.tokens import prompt_bytes  # noqa: E402


def _us(fn: Callable[[], Any], rounds: int, budget: float = 0.2) -> float:
    number = max(1, int(budget / max(timeit.timeit(fn, number=1), 1e-7)))
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e6


def _checked() -> CheckedHistories[Turn]:
    return CheckedHistories(messages_turns.weigh, end=lambda turn: turn.end)


def _fit(raw: bytes, checked: CheckedHistories[Turn]) -> bool:
    """`raw` read on the key of `checked`, and whether its ids fit (as a native deployment asks)."""
    top = read_messages(raw, checked, "key")
    assert isinstance(top, MessagesTopLevel)
    return top.turn.ids_fit()


def _next(body: dict[str, Any]) -> dict[str, Any]:
    added = [{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_next", "name": "shell",
                                                "input": {"command": "ls"}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_next",
                                           "content": "src tests"}]}]
    return {**body, "messages": [*body["messages"], *added]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent-turns", type=int, default=60)
    parser.add_argument("--image-kb", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    stream = {**MESSAGES_BODY, "stream": True}
    agent = agent_messages(stream, args.agent_turns)
    bodies = {f"agent turn ({args.agent_turns})": agent,
              f"agent turn + {args.image_kb} KiB screenshot": with_image(agent, MESSAGES_PATH, args.image_kb),
              f"{args.image_kb} KiB screenshot": with_image(stream, MESSAGES_PATH, args.image_kb)}
    print(f"{'body':<36} {'kB':>6} {'whole':>9} {'first turn':>11} {'same again':>11} {'next turn':>10}  (us)")
    for name, body in bodies.items():
        raw, later = orjson.dumps(body), orjson.dumps(_next(body))

        def whole(raw: bytes = raw) -> None:
            top = TopLevel(raw, MESSAGES_HISTORY)
            prompt_bytes(top.raw)
            anthropic_ids_fit_in(memoryview(top.fields["messages"]))

        def first(raw: bytes = raw) -> None:
            _fit(raw, _checked())

        again_checked = _checked()
        _fit(raw, again_checked)

        def again(raw: bytes = raw, checked: CheckedHistories[Turn] = again_checked) -> None:
            _fit(raw, checked)

        print(f"{name:<36} {len(raw) // 1024:>6} {_us(whole, args.rounds):>9.1f} {_us(first, args.rounds):>11.1f} "
              f"{_us(again, args.rounds):>11.1f} {_next_turn(raw, later, args.rounds):>10.1f}")


def _next_turn(raw: bytes, later: bytes, rounds: int, number: int = 200) -> float:
    """us to read `later` on a key that remembers `raw` (each read on a key of its own)."""
    best = float("inf")
    for _ in range(rounds):
        keys = []
        for _ in range(number):
            checked = _checked()
            _fit(raw, checked)
            keys.append(checked)
        began = time.perf_counter()
        for checked in keys:
            _fit(later, checked)
        best = min(best, (time.perf_counter() - began) / number * 1e6)
    return best


if __name__ == "__main__":
    main()
