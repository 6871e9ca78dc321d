"""Config fold at scale: folding N `virtual_key.created` events (plus revocations) through the same
Projection.apply a node runs, in memory (no database), and the memory the state takes per key.

    python bench/bench_config_fold.py --keys 10000 100000 1000000

Prints, per size, fold throughput (events/s), the cost of the last 1,000 events (flat when each
event is O(1)-ish, growing with N when each event copies the maps) and RSS per key.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldes.events.codec import Codec
from shieldes.events.store import RecordedEvent
from shieldes.projections.projector import Projection
from shieldes.secrets import hash_key


def events(n: int) -> list[RecordedEvent]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        data = {"id": f"key_{i:08x}", "name": f"app-{i}", "key_hash": hash_key(f"sk-{i}"), "prefix": "sk-shd-abcd",
                "models": None, "team_id": None, "expires_at": None}
        out.append(RecordedEvent(i + 1, "config", "virtual_key.created", 1, data, {}, now, None, None))
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, collect: bool) -> dict[str, float]:
    evs = events(n)
    gc.collect()
    before = rss_mb()
    p = Projection(codec=Codec())
    if not collect:
        gc.disable()  # as a node replays (shieldes.tasks.gc_paused): the fold makes no cycles
    started = time.perf_counter()
    for e in evs[:-1000]:
        p.apply(e)
    mid = time.perf_counter()
    for e in evs[-1000:]:
        p.apply(e)
    done = time.perf_counter()
    revoke = RecordedEvent(n + 1, "config", "virtual_key.revoked", 1, {"id": "key_00000000"}, {},
                           datetime.now(UTC), None, None)
    t = time.perf_counter()
    p.apply(revoke)
    revoke_us = (time.perf_counter() - t) * 1e6
    del evs
    gc.enable()
    gc.collect()
    return {"keys": n, "events_per_s": n / (done - started), "last_1000_us_per_event": (done - mid) * 1000,
            "revoke_us": revoke_us, "rss_mb_growth": rss_mb() - before}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--gc", action="store_true", help="leave the cyclic GC on during the fold")
    args = ap.parse_args()
    print(f"{'keys':>9} {'events/s':>10} {'us/event (last 1k)':>19} {'revoke us':>10} {'RSS growth MB':>14}")
    for n in args.keys:
        r = run(n, args.gc)
        print(f"{r['keys']:>9} {r['events_per_s']:>10.0f} {r['last_1000_us_per_event']:>19.1f} "
              f"{r['revoke_us']:>10.1f} {r['rss_mb_growth']:>14.1f}")


if __name__ == "__main__":
    main()
