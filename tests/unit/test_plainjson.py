"""Admin API JSON: numbers never in exponent notation, text inside strings untouched."""

from __future__ import annotations

import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from shieldes.plainjson import dumps, plain_number, plain_numbers


def test_small_and_large_numbers_are_written_out() -> None:
    data = {"cost_usd": 2e-7, "amount_usd": 1e-7, "spent": -1.5e-6, "big": 1e16, "zero": 0.0, "ten": 10.0, "n": 7}
    assert dumps(data) == (b'{"cost_usd":0.0000002,"amount_usd":0.0000001,"spent":-0.0000015,'
                           b'"big":10000000000000000.0,"zero":0.0,"ten":10.0,"n":7}')
    assert plain_number("4e-8") == "0.00000004" and plain_number("1.2345678901234568e+17") == "123456789012345680.0"


def test_text_that_looks_like_a_number_is_left_alone() -> None:
    data = {"name": "app-1e-7", "quoted": 'say "2e-7" \\ 3e+5', "2e-7": [2e-7]}
    assert dumps(data) == b'{"name":"app-1e-7","quoted":"say \\"2e-7\\" \\\\ 3e+5","2e-7":[0.0000002]}'
    assert plain_numbers(b'{"a":"no number here"}') == b'{"a":"no number here"}'


@given(st.recursive(st.floats(allow_nan=False, allow_infinity=False) | st.text() | st.integers(-2**63, 2**63 - 1),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=12))
def test_the_same_values_read_back_and_no_exponent(data: object) -> None:
    raw = dumps(data)
    assert orjson.loads(raw) == orjson.loads(orjson.dumps(data))
    outside_strings = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', raw)
    assert not re.search(rb"\d[eE]", outside_strings), raw
