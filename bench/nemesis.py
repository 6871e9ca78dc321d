"""The long nemesis schedule: three real nodes under load from the openai and anthropic SDKs (chat,
Responses turns continued across nodes, WebSocket sessions, Messages) for --minutes while random
faults follow one another (SIGKILL and restart with the same node id, a graceful restart (SIGTERM),
SIGSTOP/SIGCONT of up to 8 s, Postgres cut for --outage seconds, gossip blocked between two nodes
for up to 12 s, as a black hole or refused), then the checkers of tests/cluster/nemesis_check.py and
nemesis_agent_check.py. Prints the figures and every violation; exits 1 if there is one.

Run: PYTHONPATH=. python bench/nemesis.py [--minutes 10] [--seed N] [--outage 20] [--save history.json]
Uses the test suite's embedded Postgres (tests/pg.py); the cut is a TCP proxy in front of it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fault_kit import table
from tests import pg
from tests.cluster.nemesis import Nemesis, check_all, default_keys, plan, seed_from_env, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=None, help="replay a run (default: random, printed)")
    ap.add_argument("--outage", type=float, default=20.0, help="seconds each Postgres cut lasts")
    ap.add_argument("--save", type=Path, default=None, help="write the recorded history here (JSON)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else seed_from_env()
    lease = pg.acquire_server()  # released at the end: the embedded server stops with its last user
    server = lease.url
    pg.make_template(server)
    try:
        node_ids = ["n1", "n2", "n3"]
        nemesis = Nemesis(server, Path(tempfile.mkdtemp(prefix="nemesis-")), seed,
                          steps=plan(seed, node_ids, minutes=args.minutes, outage=args.outage),
                          keys=default_keys(args.minutes))
        history = asyncio.run(nemesis.run())
    finally:
        pg.drop_template(server)
        lease.release()
    if args.save is not None:
        args.save.write_text(json.dumps(dataclasses.asdict(history)))
    table(f"nemesis, {args.minutes:g} min, seed {seed}", summary(history))
    violations = check_all(history)
    print("\nviolations:" if violations else "\nno violation", *violations, sep="\n  ")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
