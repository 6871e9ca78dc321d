"""The CLI's one table format for a time (cli/timefmt.py), whatever form the time came in, and
`--until` given to the second including that whole second (timeparse.py)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shieldes.cli.output import emit
from shieldes.cli.timefmt import table_time, with_table_times
from shieldes.errors import InvalidRequest
from shieldes.timeparse import parse_day, parse_time

MOMENT = datetime(2026, 12, 3, 17, 38, 11, 750000, tzinfo=UTC)


def test_every_form_of_a_time_prints_the_same() -> None:
    forms = [
        MOMENT,  # from Postgres
        MOMENT.replace(tzinfo=None),  # a naive database time is UTC
        MOMENT.astimezone(timezone(timedelta(hours=-5))),  # another zone: shown in UTC
        "2026-12-03T17:38:11.750000+00:00",  # the admin API's request log (remote mode)
        "2026-12-03T17:38:11.75Z",  # key expiry, budget period
        "2026-12-03T17:38:11",  # cluster_nodes as the API gives it, naive
        MOMENT.timestamp(),  # the config log's seconds since the epoch
    ]
    assert {table_time(f) for f in forms} == {"2026-12-03 17:38:11Z"}


def test_what_is_not_a_time_is_left_alone() -> None:
    assert table_time(None) is None
    assert table_time("now") == "now"
    assert table_time(True) is True
    assert with_table_times({"started_at": MOMENT, "status": 200, "name": "2026-12-03T17:38:11Z"}) == {
        "started_at": "2026-12-03 17:38:11Z", "status": 200, "name": "2026-12-03T17:38:11Z"}


def test_tables_print_time_fields_and_json_keeps_iso() -> None:
    def printed(data: object, **kwargs: object) -> str:
        out = io.StringIO()
        with redirect_stdout(out):
            emit(data, **kwargs)  # type: ignore[arg-type]
        return out.getvalue()

    rows = [{"recorded_at": "2026-12-03T17:38:11.75+00:00", "period_start": MOMENT, "expires_at": None}]
    table = printed(rows, as_json=False)
    assert table.splitlines()[1].split() == ["2026-12-03", "17:38:11Z", "2026-12-03", "17:38:11Z", "-"]
    assert "2026-12-03 17:38:11Z" in printed(rows[0], as_json=False, vertical=True)
    assert '"recorded_at": "2026-12-03T17:38:11.75+00:00"' in printed(rows, as_json=True)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)))
def test_a_printed_time_reads_back_and_until_includes_its_second(moment: datetime) -> None:
    shown = table_time(moment)
    since = parse_time(shown, "--since")
    until = parse_time(shown, "--until", end_of_day=True)
    assert since <= moment <= until and until - since < timedelta(seconds=1)


def test_until_with_a_fraction_or_without_seconds_is_exact() -> None:
    assert parse_time("2026-12-03T17:38:11.5Z", "--until", end_of_day=True) == MOMENT.replace(microsecond=500000)
    assert parse_time("2026-12-03T17:38Z", "--until", end_of_day=True) == MOMENT.replace(second=0, microsecond=0)
    assert parse_time("2026-12-03", "--until", end_of_day=True) == datetime(2026, 12, 3, 23, 59, 59, 999999, UTC)


def test_a_filter_on_the_past_takes_a_time_ago() -> None:
    assert parse_time("15m", "--since", ago=True, now=MOMENT) == MOMENT - timedelta(minutes=15)
    assert parse_time(" 2h ", "--until", end_of_day=True, ago=True, now=MOMENT) == MOMENT - timedelta(hours=2)
    assert parse_time("2026-12-03", "--since", ago=True, now=MOMENT) == datetime(2026, 12, 3, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="or a time ago: 15m"):
        parse_time("yesterday", "--since", ago=True)
    with pytest.raises(InvalidRequest):  # an expiry is not a time ago
        parse_time("30d", "--expires-at")


def test_usage_counts_the_day_a_time_ago_falls_on() -> None:
    assert parse_day("7d", "--since", now=MOMENT) == date(2026, 11, 26)
    assert parse_day("18h", "--since", now=MOMENT) == date(2026, 12, 2)  # 23:38 the day before
    assert parse_day("2026-12-03T17:38:11Z", "--until") == parse_day("2026-12-03", "--until") == MOMENT.date()
    with pytest.raises(InvalidRequest, match="or a time ago: 15m"):
        parse_day("last week", "--since")


def test_followed_log_lines_print_cells_as_the_table_does() -> None:
    from decimal import Decimal

    from shieldes.cli.logs_cmd import TABLE_COLUMNS, _FollowTable

    row = {c: None for c in TABLE_COLUMNS} | {"started_at": MOMENT, "request_id": "r1", "cost_usd": Decimal("3.15E-6"),
                                               "stream": False, "status": 200}
    out = io.StringIO()
    with redirect_stdout(out):
        _FollowTable().print([row])
    header, line = out.getvalue().splitlines()
    assert header.startswith("STARTED_AT            REQUEST_ID  NODE_ID"), header
    assert line.startswith("2026-12-03 17:38:11Z  r1          -"), line
    assert "0.00000315" in line and "e-06" not in line, line


def test_followed_json_lines_print_money_as_decimals_in_column_order() -> None:
    from decimal import Decimal

    from shieldes.cli.logs_cmd import _print

    row = {"started_at": MOMENT, "request_id": "r1", "cost_usd": Decimal("1.215E-5"), "cost_nusd": 12150}
    out = io.StringIO()
    with redirect_stdout(out):
        _print([row], as_json=True, lines=True)
    line = out.getvalue().strip()
    assert "0.00001215" in line and "e-05" not in line.lower(), line
    assert list(json.loads(line)) == ["started_at", "request_id", "cost_usd", "cost_nusd"]
