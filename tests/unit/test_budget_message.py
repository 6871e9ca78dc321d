"""The budget refusal's message: dollars as an operator reads them, and advice that can work."""

from __future__ import annotations

from shieldes.projections.periods import unix_day
from shieldes.projections.state import Budget
from shieldes.usage.admission import NUSD, budget_message, usd

DEC_3 = unix_day(1796256000.0)  # 2026-12-03


def test_usd_has_cents_at_least_and_never_an_exponent() -> None:
    assert usd(20 * NUSD) == "$20.00"
    assert usd(NUSD // 2) == "$0.50"
    assert usd(10_000) == "$0.00001"
    assert usd(115_350) == "$0.000115"
    assert usd(0) == "$0.00"


def test_a_request_costing_more_than_the_whole_budget_is_not_told_to_wait() -> None:
    msg = budget_message("key 'tiny'", Budget(0.00001, "30d"), 0, 53_000, DEC_3)
    assert "$0.00 of $0.00001" in msg and "e-0" not in msg
    assert "up to $0.000053" in msg
    assert "more than the whole budget" in msg and "lower max_tokens" in msg
    assert "wait" not in msg


def test_a_monthly_budget_frees_up_when_the_month_turns_not_the_next_day() -> None:
    spent = budget_message("key 'k'", Budget(20.0, "1mo"), 20 * NUSD, 1000, DEC_3)
    assert "$20.00 of $20.00" in spent
    assert "the next month starts at 2027-01-01T00:00:00Z" in spent and "next day" not in spent
    rolling = budget_message("key 'k'", Budget(20.0, "30d"), 19 * NUSD, 2 * NUSD, DEC_3)
    assert "wait (the oldest day of the 30d window drops out at 2026-12-04T00:00:00Z)" in rolling
