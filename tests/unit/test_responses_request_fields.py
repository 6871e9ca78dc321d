"""parse_request checks each optional field only when the body has it: the same refusals, in the
same order whatever order the fields came in, and the same defaults without them."""

from __future__ import annotations

import itertools
import random

import pytest

from shieldes.errors import InvalidRequest
from shieldes.responses.request import _OPTIONAL, _checked_optional, parse_request

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


class _Dict(dict[str, object]):
    """A mapping of a type JSON does not make: the body goes through every check in order."""


def test_a_body_of_json_types_is_checked_for_its_values_in_the_same_order() -> None:
    """A body whose optional fields all have JSON's types is checked only for their values: the same
    refusal, for the same field, as the field-by-field checks give (random bodies, seeded)."""
    values: list[object] = [None, 0, 1, 5, 2.5, 0.5, float("nan"), float("inf"), True, False, "x", "auto",
                            "required", [], ["a"], {}, {"a": "b"}, _Dict(), {"type": "function", "name": "f"},
                            {"type": "custom", "name": "g"}, {"k" * 70: "v"}, {"k": 1}]
    names = [name for name, _ in WRONG]
    rng = random.Random(7)
    for _ in range(20_000):
        body: dict[str, object] = {**BASE, **{n: rng.choice(values) for n in rng.sample(names, rng.randint(0, 6))}}
        if rng.random() < 0.3:
            body["tools"] = [{"type": "function", "name": "f"}]
        try:
            _checked_optional(body, body.keys() & _OPTIONAL)
            expected = None
        except InvalidRequest as exc:
            expected = (exc.param, exc.message)
        try:
            req = parse_request(body)
        except InvalidRequest as exc:
            assert (exc.param, exc.message) == expected, body
            continue
        assert expected is None, body
        assert (req.streaming, req.store, req.background) == (
            bool(body.get("stream")), body.get("store") is not False, bool(body.get("background"))), body
