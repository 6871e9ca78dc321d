"""The CLI prints a list of any length in one write: JSON through orjson where it writes what the
standard library writes (with numbers never in exponent notation), tables column by column. Both
print exactly what the row-by-row printer did (kept here as the reference)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.cli.output import _MARKED, _cell, _mark_floats, emit, json_text

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-1e-3, max_value=1e-3),
    st.sampled_from([0.0, -0.0, 1e-4, 9.99e-5, 1e15, 1e16, 123456789012345.6, 100.0, 0.1 + 0.2]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(st.text(max_size=5), st.integers(0, 9)), inner, max_size=4)),
    max_leaves=20,
)


def reference_json(data: Any) -> str:
    return _MARKED.sub(r"\1", json.dumps(_mark_floats(data), indent=2, default=str, ensure_ascii=False))


def reference_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"


def printed(data: Any, **kwargs: Any) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        emit(data, **kwargs)
    return out.getvalue()


@settings(max_examples=400, deadline=None)
@given(values)
def test_json_is_what_the_standard_library_printed(data: Any) -> None:
    assert json_text(data) == reference_json(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": scalars, "b": values, "name": st.text(max_size=8)}), min_size=1,
                max_size=8))
def test_a_table_is_what_the_row_by_row_printer_printed(rows: list[dict[str, Any]]) -> None:
    assert printed(rows, as_json=False, columns=["name", "a", "b", "missing"]) == reference_table(
        rows, ["name", "a", "b", "missing"])


def test_money_never_in_exponent_notation_and_one_record_vertically() -> None:
    assert json.loads(json_text({"cost_usd": 1.8e-05})) == {"cost_usd": 1.8e-05}
    assert "0.000018" in json_text({"cost_usd": 1.8e-05}) and "e-" not in json_text([{"x": 3e-9}])
    assert printed({"name": "k", "cost_usd": 1.8e-05, "models": None}, as_json=False, vertical=True) == (
        "NAME      k\nCOST_USD  0.000018\nMODELS    -\n")
    assert printed([], as_json=False) == "(none)\n"
