"""Per-target push deadlines (shieldes/cluster/push_deadline.py): the base until a push is slow,
doubling on each timeout in a row up to the cap, following the measured round trip (srtt + 4 rttvar)
and back to the base on quick answers; a refused push grows nothing."""

from __future__ import annotations

from shieldes.cluster.push_deadline import Outcome, PushTimer, deadline, observe

BASE, CAP = 0.5, 2.5


def after(*outcomes: Outcome | float, timer: PushTimer | None = None) -> PushTimer:
    """The timer after these pushes (a float: answered with that round trip)."""
    t = timer or PushTimer()
    for o in outcomes:
        t = observe(t, Outcome.ANSWERED, o) if isinstance(o, float) else observe(t, o)
    return t


def test_a_target_never_pushed_and_one_that_answers_quickly_get_the_base() -> None:
    assert deadline(PushTimer(), base=BASE, cap=CAP) == BASE
    assert deadline(after(0.01, 0.02, 0.01), base=BASE, cap=CAP) == BASE


def test_timeouts_in_a_row_double_the_deadline_up_to_the_cap() -> None:
    seen = [deadline(after(*[Outcome.TIMED_OUT] * n), base=BASE, cap=CAP) for n in range(6)]
    assert seen == [0.5, 1.0, 2.0, 2.5, 2.5, 2.5]
    assert after(*[Outcome.TIMED_OUT] * 100).doublings <= 8 and after(*[Outcome.TIMED_OUT] * 3).timeouts == 3


def test_an_answer_ends_the_doubling_and_a_slow_one_keeps_the_deadline_above_its_round_trip() -> None:
    slow = after(Outcome.TIMED_OUT, Outcome.TIMED_OUT, 1.2)
    assert slow.doublings == 0 and slow.timeouts == 2
    d = deadline(slow, base=BASE, cap=CAP)
    assert 1.2 < d <= CAP  # srtt + 4 rttvar of one 1.2 s answer: capped at 2.5
    steady = after(*[1.0] * 30)  # a peer that always answers in 1 s: deadline just above it
    assert 1.0 < deadline(steady, base=BASE, cap=CAP) < 1.2


def test_quick_answers_bring_the_deadline_back_to_the_base() -> None:
    t = after(Outcome.TIMED_OUT, Outcome.TIMED_OUT, 2.0)
    shrinking = []
    for _ in range(40):
        t = observe(t, Outcome.ANSWERED, 0.01)
        shrinking.append(deadline(t, base=BASE, cap=CAP))
    assert shrinking == sorted(shrinking, reverse=True)  # never grows on a quick answer
    assert shrinking[-1] == BASE


def test_a_refused_push_is_not_slow() -> None:
    assert deadline(after(*[Outcome.REFUSED] * 10), base=BASE, cap=CAP) == BASE
    backed_off = after(Outcome.TIMED_OUT, Outcome.TIMED_OUT)
    assert deadline(backed_off, base=BASE, cap=CAP) == 2.0
    restarted = observe(backed_off, Outcome.REFUSED)  # down or restarting: it starts fresh when back
    assert deadline(restarted, base=BASE, cap=CAP) == BASE and restarted.timeouts == 2


def test_other_failures_change_nothing_and_a_cap_below_the_base_means_the_base() -> None:
    t = after(Outcome.TIMED_OUT, 0.3)
    assert observe(t, Outcome.FAILED) == t
    assert deadline(after(Outcome.TIMED_OUT), base=BASE, cap=0.1) == BASE
