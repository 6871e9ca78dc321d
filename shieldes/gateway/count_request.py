"""A Messages count_tokens request read by its top-level fields, where that gives the very answer
and the very error a whole decode gives.

Claude Code asks for a count with its whole conversation (tens of kB). Decoding that body into
Python objects and walking its blocks for tool call ids was most of the node's work on a count
relayed to an Anthropic upstream, which reads the bytes anyway. The top-level split
(top_level.TopLevel) takes every body orjson takes and refuses the ones it refuses (the message
aside: a refused body is decoded again, for orjson's), but for two: it reads no number, and orjson
refuses one beyond a double's range (`1e400`); and it nests no deeper than Python's recursion
limit, orjson 1024. So a body is read by its fields only when no number in its history could be out
of range (numbers_fit) and the recursion limit is at most orjson's; any other body is decoded whole.
What the history checks found (its numbers, its tool call ids) is remembered per key as
the Messages route remembers its ids (checked_histories), so an agent's next count reads only its
new turns. A count relayed elsewhere needs the body decoded anyway: a key whose last count went
elsewhere has its body decoded at once (Gateway.counts_native). No I/O."""

from __future__ import annotations

import sys

from shieldes.errors import InvalidRequest
from shieldes.gateway.checked_histories import CheckedHistories
from shieldes.gateway.top_level import MESSAGES_HISTORY, TopLevel
from shieldes.providers.tool_ids import anthropic_ids_fit_in

ORJSON_DEPTH = 1024  # orjson refuses a body nested this deep


def _shapes() -> bytes:
    table = bytearray(b"x" * 256)
    for digit in b"0123456789":
        table[digit] = ord("0")
    table[ord("e")] = table[ord("E")] = ord("e")
    table[ord("-")], table[ord(".")] = ord("-"), ord(".")
    for delimiter in b" \t\r\n,:[]{}":  # what stands before and after a number outside a string
        table[delimiter] = ord(" ")
    return bytes(table)


# a digit reads `0`, an exponent mark `e`, `-` and `.` themselves, what a JSON number is delimited
# by a space, anything else `x` (letters, quotes: a hexadecimal id or a string is not a number);
# `+` is left out (`1e+400` reads as `1e400`)
_SHAPES = _shapes()
_HUGE_EXPONENT = b"0e000"  # a digit, then an exponent of 3 digits or more
_LONG_DIGITS = b"0" * 200
_NUMBER = b"0.-"  # what a number's mantissa reads as
_QUOTE, _LIST, _SPACE, _ZERO = ord('"'), ord("["), ord(" "), ord("0")


def numbers_fit(data: bytes | memoryview) -> bool:
    """True when every JSON number in `data` is certainly within a double's range: no run of 200
    digits (an integer part that long) and no number with an exponent of 3 digits or more, so each
    is below 10^(200+99). False is not certain: text may read so too (`1e400` between spaces in a
    string); a hexadecimal id (`550e8400`) does not, as letters or quotes stand beside it."""
    shape = bytes(data).translate(_SHAPES, b"+")
    if shape.find(_LONG_DIGITS) >= 0:
        return False
    at = shape.find(_HUGE_EXPONENT)
    while at >= 0:
        start, end = at, at + 2
        while start > 0 and shape[start - 1] in _NUMBER:
            start -= 1
        while end < len(shape) and shape[end] == _ZERO:
            end += 1
        if (start == 0 or shape[start - 1] == _SPACE) and (end == len(shape) or shape[end] == _SPACE):
            return False  # a whole token, delimited as a number is
        at = shape.find(_HUGE_EXPONENT, at + 1)
    return True


def history_read(data: memoryview, prior: bool | None) -> bool | None:
    """CheckedHistories' read of a count's `messages`: None when a number in `data` may be out of
    range, else whether every tool call id in it (and before it: `prior`) fits Anthropic's rule
    (True certain, False sends the caller to the exact check on the decoded body)."""
    if not numbers_fit(data):
        return None
    return prior is not False and anthropic_ids_fit_in(data)


def field_read(data: memoryview, _prior: bool | None) -> bool | None:
    """CheckedHistories' read of a count's `system` or `tools` list: True when its numbers fit."""
    return True if numbers_fit(data) else None


def split(raw: bytes) -> TopLevel | None:
    """`raw` read by its top-level fields (the history as its bytes); None when the split refuses
    it (orjson may take it: a whole decode tells) or may take what orjson refuses by its depth."""
    if sys.getrecursionlimit() > ORJSON_DEPTH:
        return None
    try:
        return TopLevel(raw, MESSAGES_HISTORY)
    except InvalidRequest:  # (a body nested past msgspec's depth too: top_level.too_deep)
        return None


def history_checked(top: TopLevel, key_id: str, checked: CheckedHistories[bool]) -> bool | None:
    """Whether the tool call ids of `top`'s `messages` certainly fit Anthropic's rule, when every
    number in its history is certainly in a double's range (so orjson reads the body as the split
    did); None when a number may not be (the body is then decoded whole)."""
    ids_fit = True
    for name, value in top.fields.items():
        if name not in MESSAGES_HISTORY:
            continue  # (decoded by orjson in the split)
        view = memoryview(value)
        if view[0] == _QUOTE:
            continue  # a string holds no number
        if view[0] == _LIST:
            history = name == "messages"
            found = checked.check(key_id if history else f"{key_id}/{name}", view,
                                  history_read if history else field_read)
        else:
            found = True if numbers_fit(view) else None
        if found is None:
            return None
        if name == "messages":
            ids_fit = found
    return ids_fit
