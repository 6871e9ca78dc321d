"""What the tests of a turn read from where the last one ended share (Messages, chat, Responses):
a body encoded as clients do, a read that counts the bytes it is given, and a body spoilt with a
byte sequence that is no UTF-8."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson
import pytest
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.gateway.top_level import check_utf8

T = TypeVar("T")
Read = Callable[[memoryview, T | None], T | None]

# byte sequences that are no UTF-8: a lone invalid byte, cut two- and three-byte sequences, a surrogate
BAD_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"])


def encoded(body: dict[str, Any], style: str) -> bytes:
    """`body` as a client encodes it: `spaced` (Python's json), `indented`, else compact."""
    if style == "spaced":
        return json.dumps(body).encode()
    if style == "indented":
        return json.dumps(body, indent=2).encode()
    return orjson.dumps(body)


class Reads(Generic[T]):
    """A turn read (`read_turn(raw)`), counting the bytes it was given."""

    def __init__(self, read_turn: Callable[[bytes], Read[T]]) -> None:
        self.bytes = 0
        self._read_turn = read_turn

    def __call__(self, raw: bytes) -> Read[T]:
        def read(data: memoryview, before: T | None) -> T | None:
            self.bytes += len(data)
            return self._read_turn(raw)(data, before)

        return read


def spoilt(good: bytes, bad: bytes, at: int) -> bytes:
    """`good` with `bad` in its new message (its `"x" * 40`) when `at` < 40, else in the fields after it."""
    place = good.index(b"x" * 40) + at if at < 40 else len(good) - 3
    return good[:place] + bad + good[place:]


def assert_the_whole_bodys_utf8_error(body: bytes, read: Callable[[], object]) -> None:
    """`read` of `body` refuses it as checking the whole body's UTF-8 does, in the same words."""
    with pytest.raises(InvalidRequest) as whole:
        check_utf8(body)
    with pytest.raises(InvalidRequest) as got:
        read()
    assert str(got.value) == str(whole.value)
