"""parse_request checks each optional field only when the body has it: the same refusals, in the
same order whatever order the fields came in, and the same defaults without them."""

from __future__ import annotations

import itertools

import pytest

from shieldes.errors import InvalidRequest
from shieldes.responses.request import parse_request

BASE = {"model": "gpt-4o", "input": "hi"}
# each optional field with a value of the wrong type, in the order parse_request checks them
WRONG = [("max_output_tokens", "5"), ("temperature", "hot"), ("top_p", [1]), ("instructions", 3),
         ("tools", {}), ("tool_choice", 1), ("parallel_tool_calls", "yes"), ("text", "json"),
         ("reasoning", "low"), ("include", "all"), ("metadata", []), ("store", "no"), ("background", 1),
         ("stream", "yes")]


@pytest.mark.parametrize(("name", "value"), WRONG)
def test_each_optional_field_of_the_wrong_type_is_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_request({**BASE, name: value})
    assert err.value.param == name
    assert f"field {name!r} has the wrong type" in err.value.message


def test_the_first_wrong_field_in_check_order_is_named_whatever_the_body_order() -> None:
    for (a, va), (b, vb) in itertools.combinations(WRONG, 2):
        for body in ({**BASE, a: va, b: vb}, {b: vb, **BASE, a: va}):
            with pytest.raises(InvalidRequest) as err:
                parse_request(body)
            assert err.value.param == a, (a, b, list(body))


def test_values_out_of_range_and_the_tool_choice_check_keep_their_place() -> None:
    with pytest.raises(InvalidRequest, match="positive integer") as err:
        parse_request({**BASE, "temperature": "hot", "max_output_tokens": 0})
    assert err.value.param == "max_output_tokens"
    with pytest.raises(InvalidRequest) as err:
        parse_request({**BASE, "text": "json", "tool_choice": "required"})
    assert err.value.param == "tool_choice"  # (checked before text, as tools come before it)
    with pytest.raises(InvalidRequest) as err:
        parse_request({**BASE, "tool_choice": {"type": "function", "name": "f"}, "tools": []})
    assert err.value.param == "tool_choice"
    with pytest.raises(InvalidRequest, match="Background mode requires"):
        parse_request({**BASE, "background": True, "store": False})
    with pytest.raises(InvalidRequest, match="at most 16"):
        parse_request({**BASE, "metadata": {"k": 1}})


def test_absent_and_null_fields_take_the_defaults() -> None:
    for body in (BASE, {**BASE, **{name: None for name, _ in WRONG}}):
        req = parse_request(body)
        assert (req.streaming, req.store, req.background, req.max_output_tokens) == (False, True, False, None)
    req = parse_request({**BASE, "stream": True, "store": False, "max_output_tokens": 7, "background": False})
    assert (req.streaming, req.store, req.background, req.max_output_tokens) == (True, False, False, 7)
