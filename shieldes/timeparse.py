"""Durations and times as people type them ('30d', '2026-11-01T12:00Z'), for the CLI and the admin API."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from shieldes.errors import InvalidRequest

MAX_EXPIRY = datetime(9999, 12, 31, tzinfo=UTC).timestamp()

_TO_THE_SECOND = re.compile(r"[T t]\d\d:\d\d:\d\d(?![.,\d])")  # seconds given, no fraction
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, what: str) -> float:
    """'90s', '15m', '12h', '30d', '2w' -> seconds."""
    m = _DURATION.match(text.lower())
    if not m:
        raise InvalidRequest(f"malformed {what} {text!r}: use a number and a unit s, m, h, d or w (e.g. 30d)")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def parse_time(text: str, what: str, *, end_of_day: bool = False, ago: bool = False,
               now: datetime | None = None) -> datetime:
    """An ISO date or timestamp ('2026-11-01', '2026-11-01T12:00', '...Z', '2026-11-01 12:00:05Z'
    as the CLI's tables print it); naive means UTC. With `end_of_day` (an inclusive --until) a bare
    date means the end of that day, and a time to the second (no fraction) the end of that second:
    the time a table printed for a row, given back as --until, includes that row. With `ago` (a
    filter on the past: logs, audit) a duration means that long before `now`: '15m', '2h', '7d'."""
    raw = text.strip()
    if ago and _DURATION.match(raw.lower()):
        try:
            return (now or datetime.now(UTC)) - timedelta(seconds=parse_duration(raw, what))
        except OverflowError:  # before the year 1: no time a datetime holds
            raise InvalidRequest(f"{what} {text!r} reaches back before the year 1; give a shorter time ago "
                                 "(e.g. 3650d), or a date") from None
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            ts = datetime(d.year, d.month, d.day, tzinfo=UTC)
            return ts.replace(hour=23, minute=59, second=59, microsecond=999999) if end_of_day else ts
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        ago_hint = ", or a time ago: 15m, 2h, 7d" if ago else ""
        raise InvalidRequest(
            f"malformed {what} {text!r}: use an ISO date or time, e.g. 2026-11-01 or 2026-11-01T12:00:00Z{ago_hint}"
        ) from None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if end_of_day and _TO_THE_SECOND.search(raw):
        ts = ts.replace(microsecond=999999)
    return ts


def parse_day(text: str, what: str, *, now: datetime | None = None) -> date:
    """The UTC day a time falls on, for a count over whole days (usage): a date, a timestamp, or a
    time ago as a filter on the past takes it ('7d' is the day seven days before `now`)."""
    return parse_time(text, what, ago=True, now=now).date()


def expiry(expires_in: str | None, expires_at: str | None, now: float) -> float | None:
    """Seconds since the epoch from --expires-in or --expires-at; must lie in the future."""
    if expires_in is not None and expires_at is not None:
        raise InvalidRequest("pass either --expires-in or --expires-at, not both")
    if expires_in is not None:
        ts = now + parse_duration(expires_in, "--expires-in")
        if ts <= now:
            raise InvalidRequest(f"--expires-in {expires_in!r} is not in the future; use e.g. 30d")
    elif expires_at is not None:
        ts = parse_time(expires_at, "--expires-at").timestamp()
        if ts <= now:
            raise InvalidRequest(f"--expires-at {expires_at!r} is in the past; give a future time")
    else:
        return None
    if ts > MAX_EXPIRY:
        raise InvalidRequest("the expiry is after the year 9999; pick a nearer time")
    return round(ts, 3)
