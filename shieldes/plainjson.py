"""JSON text whose numbers never use exponent notation: money reads as decimals (`0.0000002`, not
`2e-7`) in every admin API answer, as in the CLI's `--json`. orjson writes floats below 1e-6 or
from 1e16 with an exponent; those numbers (only those, never text inside strings) are rewritten."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson

_DIGITS = frozenset(b"0123456789")
_IN_NUMBER = frozenset(b"0123456789.-")
_BEFORE_NUMBER = frozenset(b":,[")  # orjson writes a number only after these (or alone)
# a string (skipped whole, escapes and all) or a number with an exponent
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?[eE][-+]?\d+)')


def plain_number(text: str) -> str:
    """`2e-7` -> `0.0000002`, `1e+16` -> `10000000000000000.0` (a float stays one)."""
    out = format(Decimal(text), "f")
    return out if "." in out else out + ".0"


def _plain(match: re.Match[bytes]) -> bytes:
    number = match.group(1)
    return match.group(0) if number is None else plain_number(number.decode()).encode()


def _may_hold_one(raw: bytes) -> bool:
    """A cheap first look (bytes.find, no regex scan: a page of ten thousand keys in well under a
    millisecond): orjson writes an exponent with its sign (`2e-7`, `1e+16`), and most answers hold
    none; an id or name ("claude-3", "key_01e-...") is no number. True for every exponent number
    orjson writes (and for some text in strings: the full pass decides)."""
    for mark in (b"e-", b"e+"):
        at = raw.find(mark)
        while at != -1:
            start = at
            while start and raw[start - 1] in _IN_NUMBER:
                start -= 1
            if start < at and raw[at - 1] in _DIGITS and (not start or raw[start - 1] in _BEFORE_NUMBER):
                return True
            at = raw.find(mark, at + 2)
    return False


def plain_numbers(raw: bytes) -> bytes:
    """`raw` (JSON text, or a run of whole JSON values) with every exponent number written out."""
    return _TOKEN.sub(_plain, raw) if _may_hold_one(raw) else raw


def dumps(data: Any) -> bytes:
    return plain_numbers(orjson.dumps(data))
