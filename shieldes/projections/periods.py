"""Budget periods as pure arithmetic on UTC day numbers (days since the unix epoch)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_DAYS = re.compile(r"^([1-9][0-9]{0,2})d$")
_MONTHS = {"1mo"}
EPOCH = date(1970, 1, 1)


def parse_period(period: str) -> str:
    """Validate a budget period; returns it normalised or raises ValueError with the accepted forms."""
    p = period.strip().lower()
    m = _DAYS.match(p)
    if (m and int(m.group(1)) <= 366) or p in _MONTHS:
        return p
    raise ValueError(f"malformed budget period {period!r}: use Nd (1d..366d, e.g. 1d, 30d) or 1mo")


def unix_day(ts: float) -> int:
    return int(ts // 86400)


def unix_hour(ts: float) -> int:
    return int(ts // 3600)


def period_days(period: str, today: int) -> range:
    """The day numbers counted by `period` on day `today` (rolling N days, or the calendar month)."""
    if period in _MONTHS:
        d = EPOCH + timedelta(days=today)
        first = (d.replace(day=1) - EPOCH).days
        return range(first, today + 1)
    n = int(period[:-1])
    return range(today - n + 1, today + 1)


def period_reset_at(period: str, today: int) -> datetime:
    """When the oldest day of the window drops out (rolling) or the month turns (calendar)."""
    d = EPOCH + timedelta(days=today)
    if period in _MONTHS:
        nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
        return datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)
    nxt = d + timedelta(days=1)
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)
