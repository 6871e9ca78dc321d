"""The open-files decisions: the soft limit asked for, and when a node warns."""

from __future__ import annotations

from shieldes.open_files import CEILING, Headroom, wanted_soft_limit

INF = -1


def test_the_soft_limit_asked_for_is_the_hard_one_within_the_ceiling() -> None:
    assert wanted_soft_limit(1024, 524288, INF) == 524288
    assert wanted_soft_limit(1024, 1024, INF) == 1024
    assert wanted_soft_limit(1024, INF, INF) == CEILING
    assert wanted_soft_limit(1024, 10 * CEILING, INF) == CEILING
    assert wanted_soft_limit(2 * CEILING, 4 * CEILING, INF) == 2 * CEILING  # never lowered
    assert wanted_soft_limit(INF, INF, INF) == INF


def test_a_warning_starts_past_80_percent_and_ends_below_70() -> None:
    h = Headroom()
    assert h.check(799, 1000) is None
    line = h.check(800, 1000)
    assert line is not None and "800 of this process's limit of 1000 (80%)" in line and "ulimit -n" in line
    assert h.warning
    assert h.check(950, 1000) is None and h.check(700, 1000) is None  # said once; 70% is still near
    assert h.check(699, 1000) == "open files back to 699 of the limit of 1000 (70%)"
    assert not h.warning and h.check(10, 1000) is None
    assert h.check(5, 0) is None  # (no limit known: nothing to say)
