"""JSON text whose numbers never use exponent notation: money reads as decimals (`0.0000002`, not
`2e-7`) in every admin API answer, as in the CLI's `--json`. orjson writes floats below 1e-6 or
from 1e16 with an exponent; those numbers (only those, never text inside strings) are rewritten."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson

_MAYBE = re.compile(rb"\d[eE][-+]?\d")  # cheap first look: most answers have no such number
# a string (skipped whole, escapes and all) or a number with an exponent
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?[eE][-+]?\d+)')


def plain_number(text: str) -> str:
    """`2e-7` -> `0.0000002`, `1e+16` -> `10000000000000000.0` (a float stays one)."""
    out = format(Decimal(text), "f")
    return out if "." in out else out + ".0"


def _plain(match: re.Match[bytes]) -> bytes:
    number = match.group(1)
    return match.group(0) if number is None else plain_number(number.decode()).encode()


def plain_numbers(raw: bytes) -> bytes:
    """`raw` (JSON text, or a run of whole JSON values) with every exponent number written out."""
    return _TOKEN.sub(_plain, raw) if _MAYBE.search(raw) else raw


def dumps(data: Any) -> bytes:
    return plain_numbers(orjson.dumps(data))
