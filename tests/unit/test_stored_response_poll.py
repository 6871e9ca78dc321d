"""How long a read polls for a stored response another node may still be writing
(responses/write_pacing.poll_deadline, the function the store's reads run)."""

from __future__ import annotations

from shieldes.responses.write_pacing import RECONNECT_SLACK, WAITED_FOR_POSTGRES, poll_deadline


def test_a_read_answered_at_once_polls_read_wait_from_the_answer() -> None:
    assert poll_deadline(100.0, 100.004, 2.0, unstored=False) == 100.004 + 2.0


def test_a_read_that_waited_for_postgres_polls_longer_as_the_writer_reconnects_through_its_backoff() -> None:
    # an outage: the read asked at 100 and Postgres first answered 3 s later; the node holding the
    # row reconnects up to 2 s after Postgres is back and writes on its next try, a second apart
    answered = 100.0 + 3.0
    deadline = poll_deadline(100.0, answered, 2.0, unstored=False)
    assert deadline == answered + 2.0 + RECONNECT_SLACK
    assert deadline - answered >= 2.0 + 2.0 + 1.0  # the pool's widest gap, then the writer's retry


def test_the_longer_poll_starts_where_a_wait_for_postgres_does() -> None:
    just_below = poll_deadline(0.0, WAITED_FOR_POSTGRES - 0.01, 2.0, unstored=False)
    at = poll_deadline(0.0, WAITED_FOR_POSTGRES, 2.0, unstored=False)
    assert just_below == WAITED_FOR_POSTGRES - 0.01 + 2.0
    assert at == WAITED_FOR_POSTGRES + 2.0 + RECONNECT_SLACK


def test_an_id_minted_unstored_is_not_polled_for_even_after_an_outage() -> None:
    assert poll_deadline(100.0, 104.0, 2.0, unstored=True) == 104.0
