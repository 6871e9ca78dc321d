from datetime import UTC, datetime

import pytest

from shieldes.projections.periods import parse_period, period_days, period_reset_at, unix_day


def day(y: int, m: int, d: int) -> int:
    return unix_day(datetime(y, m, d, 12, tzinfo=UTC).timestamp())


@pytest.mark.parametrize("good", ["1d", "30d", "366d", "1mo", " 7D "])
def test_accepts_documented_periods(good: str) -> None:
    assert parse_period(good) == good.strip().lower()


@pytest.mark.parametrize("bad", ["", "0d", "367d", "1w", "-1d", "d", "1m", "30", "1mo1"])
def test_rejects_malformed_periods(bad: str) -> None:
    with pytest.raises(ValueError, match="use Nd"):
        parse_period(bad)


def test_rolling_days_window() -> None:
    today = day(2026, 3, 15)
    assert list(period_days("1d", today)) == [today]
    assert len(period_days("30d", today)) == 30
    assert period_days("30d", today)[0] == today - 29


def test_calendar_month_window_and_reset() -> None:
    today = day(2026, 3, 15)
    window = period_days("1mo", today)
    assert window[0] == day(2026, 3, 1) and window[-1] == today
    assert period_reset_at("1mo", today) == datetime(2026, 4, 1, tzinfo=UTC)
    assert period_reset_at("1mo", day(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)
