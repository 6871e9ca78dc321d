"""How long `serve --workers` waits before starting a crashed worker again (cli/workers.py)."""

from __future__ import annotations

from shieldes.cli.workers import FIRST_DELAY, LONGEST_DELAY, STABLE_AFTER, restart_delay


def test_crash_loops_back_off_and_a_stable_worker_starts_over() -> None:
    delay = None
    seen = []
    for _ in range(8):  # a worker that dies 2 s after each start
        delay = restart_delay(2.0, delay)
        seen.append(delay)
    assert seen == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert seen[0] == FIRST_DELAY and max(seen) == LONGEST_DELAY
    assert restart_delay(STABLE_AFTER, 30.0) == FIRST_DELAY  # it ran a minute: a new crash, not a loop
