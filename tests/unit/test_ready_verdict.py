"""/ready's verdict on the database (shieldes/node.py database_answers): the newest evidence wins,
and a poll left without an answer past its bound is a silent database before the poll itself ends."""

from __future__ import annotations

from shieldes.log_poller import database_answers

BOUND = 5.0


def test_a_poll_without_an_answer_past_its_bound_is_a_silent_database() -> None:
    # the last poll succeeded at 9; the poll begun at 10 has read nothing since
    assert database_answers(True, 0.0, 10.0, 9.0, now=15.0, bound=BOUND)
    assert not database_answers(True, 0.0, 10.0, 9.0, now=15.1, bound=BOUND)


def test_an_answer_since_the_poll_began_is_not_a_stall() -> None:
    # its first page came at 10.5 (a long catch-up), or a flush succeeded while it waited
    assert database_answers(True, 0.0, 10.0, 10.5, now=40.0, bound=BOUND)


def test_a_failed_poll_holds_until_the_database_answers_again() -> None:
    assert not database_answers(False, 20.0, None, 19.0, now=21.0, bound=BOUND)
    assert not database_answers(False, 20.0, 21.0, 19.0, now=21.5, bound=BOUND)  # the next poll under way
    assert database_answers(False, 20.0, 21.0, 21.2, now=21.5, bound=BOUND)  # a flush, or that poll's read


def test_no_poll_under_way_and_no_failure_is_ok() -> None:
    assert database_answers(True, 0.0, None, 0.0, now=1000.0, bound=BOUND)
