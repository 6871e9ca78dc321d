"""A Messages count read by its top-level fields only where a whole decode (orjson) reads it the
same: numbers that may be out of a double's range, nesting beyond orjson's depth and any body the
split refuses go to the whole decode; an agent's next count reads only its new turns."""

from __future__ import annotations

import sys

import orjson
import pytest

from shieldes.gateway.checked_histories import CheckedHistories
from shieldes.gateway.count_request import history_checked, numbers_fit, split


def _fast(raw: bytes, checked: CheckedHistories[bool] | None = None) -> bool | None:
    """What the count route reads `raw` with: the ids verdict on the fast path, None: decoded whole."""
    top = split(raw)
    return None if top is None else history_checked(top, "k", checked or CheckedHistories(remember_from=0))


def _body(history: str, **fields: str) -> bytes:
    extra = "".join(f',"{name}":{value}' for name, value in fields.items())
    return f'{{"model":"m","messages":{history}{extra}}}'.encode()


@pytest.mark.parametrize("number", ["1e308", "1.7e308", "-1E+99", "1e-400", "0.5e-999", "123456789" * 22,
                                    "18446744073709551616", "-0.0", "0", "3.25"])
def test_numbers_in_range_are_read_by_fields(number: str) -> None:
    raw = _body(f'[{{"role":"user","content":[{{"type":"tool_use","id":"t","name":"f","input":{{"n":{number}}}}}]}}]')
    orjson.loads(raw)
    expected = number not in ("1e308", "1.7e308") and len(number) < 200  # (3-digit exponents, long runs: unsure)
    assert (_fast(raw) is not None) == expected


@pytest.mark.parametrize("number", ["1e309", "1.8e308", "1E+400", "-1e0309", "9" * 400, "1" + "0" * 210 + "e99"])
def test_a_number_out_of_range_is_left_to_the_whole_decode(number: str) -> None:
    for field in ("messages", "tools", "system"):
        value = f"[{{\"n\":{number}}}]" if field != "messages" else f'[{{"role":"user","content":{number}}}]'
        raw = _body("[]", **{field: value}) if field != "messages" else _body(value)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        assert _fast(raw) is None, (field, number)
        assert not numbers_fit(value.encode())


@pytest.mark.parametrize("text", ["commit 4e5d6e789ab1", "id 550e8400-e29b-41d4-a716-446655440000",
                                  "toolu_01Xe1234", '\\"1e400\\"', "x=1e400;", "2e10 and 3E+99"])
def test_ids_and_numbers_in_text_are_read_by_fields(text: str) -> None:
    raw = _body(f'[{{"role":"user","content":"{text}"}}]')
    orjson.loads(raw)
    assert _fast(raw) is True, text


@pytest.mark.parametrize("text", ["it is 1e400 big", "[1e309]", "a -1.5E+400, b"])
def test_a_number_out_of_range_in_text_reads_as_one(text: str) -> None:
    """(the check does not tell strings apart: such text is decoded whole, for the same answer)"""
    raw = _body(f'[{{"role":"user","content":"{text}"}}]')
    orjson.loads(raw)
    assert _fast(raw) is None, text


@pytest.mark.parametrize("raw", [
    b'{"model":"m","messages":["\\ud800"]}', b'{"model":"m","messages":["\\udc00"]}',
    b'{"model":"m","messages":["\\ud800\\u0041"]}', b'{"model":"m","messages":[01]}',
    b'{"model":"m","messages":[1.]}', b'{"model":"m","messages":[NaN]}', b'{"model":"m","messages":["\x01"]}',
    b'\xef\xbb\xbf{"model":"m","messages":[]}', b'{"model":"m","messages":[]} x', b'{"model":"m","messages":[1,]}',
    b'{"model":"m","messages":["\xff"]}', b'{"model":"m","messages":["\xed\xa0\x80"]}',
    b'{"model":"m","messages":' + b"[" * 1100 + b"]" * 1100 + b"}",
    b'{"model":"m","messages":[' + b'{"a":' * 1030 + b"1" + b"}" * 1030 + b"]}",
])
def test_what_orjson_refuses_is_never_read_by_fields(raw: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    assert _fast(raw) is None


def test_a_body_that_is_not_an_object_is_left_to_the_whole_decode() -> None:
    for raw in (b"[1]", b'"m"', b"null"):
        assert _fast(raw) is None


def test_nesting_is_left_to_the_whole_decode_when_the_recursion_limit_is_above_orjsons() -> None:
    raw = b'{"model":"m","messages":[' + b"[" * 50 + b"]" * 50 + b"]}"
    assert _fast(raw) is True
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(5000)
    try:
        assert _fast(raw) is None
    finally:
        sys.setrecursionlimit(before)


def test_fields_read_as_orjson_reads_them() -> None:
    raw = b'{"model":"a","messages":[],"model":"b","system":"1e999 in text","metadata":{"user_id":"u"}}'
    top = split(raw)
    assert top is not None and history_checked(top, "k", CheckedHistories()) is True
    assert top.small == {k: v for k, v in orjson.loads(raw).items() if k not in ("messages", "system")}


def test_tool_ids_another_provider_minted_send_the_count_to_the_exact_check() -> None:
    fits = '[{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{}}]}]'
    minted = '[{"role":"assistant","content":[{"type":"tool_use","id":"call.1:x","name":"f","input":{}}]}]'
    assert _fast(_body(fits)) is True and _fast(_body(minted)) is False


def test_an_agents_next_count_reads_only_its_new_turns() -> None:
    checked: CheckedHistories[bool] = CheckedHistories(remember_from=0)
    turns = [f'{{"role":"user","content":"turn {i} ' + "x" * 100 + '"}' for i in range(40)]
    assert _fast(_body("[" + ",".join(turns[:20]) + "]", tools='[{"name":"f","input_schema":{}}]'), checked) is True
    read: list[bytes] = []
    history = checked.check
    checked.check = lambda key, data, how: history(key, data, lambda d, p: read.append(bytes(d)) or how(d, p))  # type: ignore[method-assign,func-returns-value]
    assert _fast(_body("[" + ",".join(turns) + "]", tools='[{"name":"f","input_schema":{}}]'), checked) is True
    assert read == [("," + ",".join(turns[20:]) + "]").encode(), b"]"]  # the new turns; the same tools
    # a number out of range in a new turn is read there
    assert _fast(_body("[" + ",".join([*turns, '{"role":"user","content":1e999}']) + "]"), checked) is None
