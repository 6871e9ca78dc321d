"""A list printed page by page (`key list`) is the JSON `emit` prints for the whole list, and a table
whose first page is aligned as `emit` aligns it."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.cli.output import emit
from shieldes.cli.stream_out import emit_pages

COLUMNS = ("name", "rpm", "budget_usd", "expires_at")
ROWS = st.lists(st.fixed_dictionaries({
    "name": st.text(min_size=1, max_size=8), "rpm": st.one_of(st.none(), st.integers(0, 10**6)),
    "budget_usd": st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
    "expires_at": st.one_of(st.none(), st.just("2027-01-01T00:00:00Z")), "models": st.lists(st.text(max_size=3))}),
    max_size=12)


def _pages(rows: list[dict[str, Any]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    bounds = sorted({0, len(rows), *(c % (len(rows) + 1) for c in cuts)})
    return [rows[a:b] for a, b in pairwise(bounds)] + [[]]  # an empty page: printed as none


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ROWS, st.lists(st.integers(0, 12), max_size=4))
def test_json_page_by_page_is_the_whole_lists_json(capsys: pytest.CaptureFixture[str], rows: list[dict[str, Any]],
                                                   cuts: list[int]) -> None:
    emit(rows, as_json=True)
    whole = capsys.readouterr().out
    emit_pages(iter(_pages(rows, cuts)), as_json=True, columns=COLUMNS)
    assert capsys.readouterr().out == whole


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ROWS)
def test_a_table_of_one_page_is_the_whole_lists_table(capsys: pytest.CaptureFixture[str],
                                                      rows: list[dict[str, Any]]) -> None:
    emit(rows, as_json=False, columns=COLUMNS)
    whole = capsys.readouterr().out
    emit_pages(iter([rows]), as_json=False, columns=COLUMNS)
    assert capsys.readouterr().out == whole


def test_a_later_page_widens_a_column_only_from_its_rows_on(capsys: pytest.CaptureFixture[str]) -> None:
    first, later = [{"name": "a", "rpm": 1}], [{"name": "a-longer-name", "rpm": 2}, {"name": "b", "rpm": 3}]
    emit_pages(iter([first, later]), as_json=False, columns=("name", "rpm"))
    assert capsys.readouterr().out.splitlines() == [
        "NAME  RPM", "a     1", "a-longer-name  2", "b              3"]
