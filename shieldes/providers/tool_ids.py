"""Tool call ids as each upstream accepts them. A conversation (or a fallback group) carries the
ids one provider minted into another whose rules differ: Kimi's `functions.get_weather:0`,
Gemini's signed ids hundreds of characters long, OpenAI's `call_...`. Before history goes to an
upstream, every id that breaks that upstream's rule is replaced by a short id made from a hash of
it, so the same id becomes the same replacement in the assistant's call and in the tool result that
answers it (the pair stays matched, in every turn and on every node); an id that fits is sent as it
is. Pure: no I/O, no state."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

Body = dict[str, Any]
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _hashed(call_id: str) -> str:
    """`call_` and 32 hex digits (128 bits of SHA-256): fits every rule below but Mistral's."""
    return "call_" + hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _hashed9(call_id: str) -> str:
    """Nine base-62 digits of SHA-256 (53 bits), Mistral's shape."""
    n = int.from_bytes(hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    out = []
    for _ in range(9):
        n, digit = divmod(n, 62)
        out.append(_BASE62[digit])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class IdRule:
    """What an upstream takes as a tool call id: `pattern` must match the whole id (None: any
    text), `max_len` bounds its length; `make` builds the replacement of an id that does not fit
    (it must fit the rule itself, so fitting twice changes nothing)."""

    name: str
    pattern: re.Pattern[str] | None = None
    max_len: int | None = None
    make: Callable[[str], str] = _hashed

    def fits(self, call_id: str) -> bool:
        if not call_id or (self.max_len is not None and len(call_id) > self.max_len):
            return False  # (no API takes an empty id)
        return self.pattern is None or self.pattern.fullmatch(call_id) is not None

    def fit(self, call_id: str) -> str:
        """`call_id` when it fits, else its replacement (the same one every time)."""
        return call_id if self.fits(call_id) else self.make(call_id)


_SAFE = re.compile(r"[a-zA-Z0-9_-]+")
ANY = IdRule("any")  # Gemini and Vertex: the translation sends no ids (results are matched by name)
OPENAI = IdRule("openai", None, 40)  # chat tool_calls[].id: 1 to 40 characters
ANTHROPIC = IdRule("anthropic", _SAFE)  # tool_use.id: ^[a-zA-Z0-9_-]+$
BEDROCK = IdRule("bedrock", _SAFE, 64)  # Converse toolUseId: [a-zA-Z0-9_-]+, 1 to 64 characters
MISTRAL = IdRule("mistral", re.compile(r"[a-zA-Z0-9]{9}"), 9, _hashed9)  # exactly 9 letters and digits
# Responses API `call_id` of function_call, custom_tool_call and their output items: up to 64 characters
# (OpenAI answers 400 string_above_max_length beyond); what a native Responses upstream takes
RESPONSES = IdRule("responses", None, 64)
RULES: dict[str, IdRule] = {"openai": OPENAI, "azure": OPENAI, "anthropic": ANTHROPIC, "bedrock": BEDROCK,
                            "gemini": ANY, "vertex": ANY}


def rule_for(kind: str, base_url: str = "") -> IdRule:
    """The id rule of a deployment: by its kind, and for `openai` by the service its base URL names
    (Mistral's API takes only its own 9-character ids)."""
    if kind == "openai" and "mistral.ai" in base_url and (urlsplit(base_url).hostname or "").endswith("mistral.ai"):
        return MISTRAL
    return RULES.get(kind, ANY)


def changed_items(items: list[Any], change: Callable[[Any], Any]) -> list[Any] | None:
    """`items` with `change` applied to each, or None when it returned every item itself (nothing
    is copied until something changes: most histories need nothing)."""
    out: list[Any] | None = None
    for i, item in enumerate(items):
        new = change(item)
        if new is not item and out is None:
            out = items[:i]
        if out is not None:
            out.append(new)
    return out


def _fit_call(call: Any, rule: IdRule) -> Any:
    if isinstance(call, dict) and isinstance(call.get("id"), str) and not rule.fits(call["id"]):
        return dict(call, id=rule.make(call["id"]))
    return call


def _fit_message(msg: Any, rule: IdRule) -> Any:
    if not isinstance(msg, dict):
        return msg
    out = msg
    calls = msg.get("tool_calls")
    fitted = changed_items(calls, lambda c: _fit_call(c, rule)) if isinstance(calls, list) else None
    if fitted is not None:
        out = dict(out, tool_calls=fitted)
    answered = msg.get("tool_call_id")
    if isinstance(answered, str) and not rule.fits(answered):
        out = dict(out, tool_call_id=rule.make(answered))
    return out


def fit_chat_ids(body: Body, rule: IdRule) -> Body:
    """An OpenAI chat request with every tool call id (assistant `tool_calls[].id`, tool
    `tool_call_id`) fitted to `rule`. The very same object when every id already fits, so callers
    can tell with `is` whether the client's bytes still hold."""
    messages = body.get("messages")
    if rule is ANY or not isinstance(messages, list) or chat_history_fits(messages, rule):
        return body
    fitted = changed_items(messages, lambda m: _fit_message(m, rule))
    return body if fitted is None else dict(body, messages=fitted)


TEXT_OR_NONE = (str, type(None))  # (a tuple: `str | None` would be built anew at every call)


def chat_history_fits(messages: list[Any], rule: IdRule, *, text_arguments: bool = False) -> bool:
    """Whether a chat history can go as it is: every tool call id fits `rule` (any id does for
    ANY) and, with `text_arguments`, every tool call's arguments are text (tool_args). One pass of
    plain loops, nothing built: it runs on every chat request, long agent histories included."""
    fits = None if rule is ANY else rule.fits
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if not isinstance(call, dict):
                    continue
                ident = call.get("id")
                if fits is not None and isinstance(ident, str) and not fits(ident):
                    return False
                fn = call.get("function")
                if text_arguments and isinstance(fn, dict) and not isinstance(fn.get("arguments", ""), TEXT_OR_NONE):
                    return False
        answered = msg.get("tool_call_id")
        if fits is not None and isinstance(answered, str) and not fits(answered):
            return False
    return True


def _fit_block(block: Any, rule: IdRule) -> Any:
    if not isinstance(block, dict):
        return block
    kind = block.get("type")
    field = "id" if kind == "tool_use" else "tool_use_id" if kind == "tool_result" else None
    value = block.get(field) if field else None
    if field is None or not isinstance(value, str) or rule.fits(value):
        return block
    return dict(block, **{field: rule.make(value)})


def fit_messages_ids(body: Body, rule: IdRule) -> Body:
    """An Anthropic Messages request with every `tool_use.id` and `tool_result.tool_use_id` fitted
    to `rule`; the very same object when every id already fits."""
    messages = body.get("messages")
    if rule is ANY or not isinstance(messages, list) or messages_ids_fit(messages, rule):
        return body

    def fit_message(msg: Any) -> Any:
        content = msg.get("content") if isinstance(msg, dict) else None
        blocks = changed_items(content, lambda b: _fit_block(b, rule)) if isinstance(content, list) else None
        return msg if blocks is None else dict(msg, content=blocks)

    fitted = changed_items(messages, fit_message)
    return body if fitted is None else dict(body, messages=fitted)


def messages_ids_fit(messages: list[Any], rule: IdRule) -> bool:
    """Whether every `tool_use.id` and `tool_result.tool_use_id` of an Anthropic Messages history
    fits `rule`. One pass of plain loops, nothing built: it runs on every Messages request, and a
    coding agent's history holds hundreds of blocks."""
    ids: list[str] = []
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_use":
                value = block.get("id")
            elif kind == "tool_result":
                value = block.get("tool_use_id")
            else:
                continue
            if isinstance(value, str):
                ids.append(value)
    return all_fit(ids, rule)


# the string value of every key ending in `id`, and what ends it (a quote, or an escape)
_ID_VALUES = re.compile(rb'id"\s*:\s*"([^"\\]*)(.)', re.S)
_SAFE_BYTES = re.compile(rb"[a-zA-Z0-9_-]+")


# a run of this many bytes without a quote is inside a long string (base64 media): not read by the regex
_RUN = 4096


def anthropic_ids_fit_in(history: bytes | memoryview, start: int = 0, end: int | None = None) -> bool:
    """messages_ids_fit(messages, ANTHROPIC) read off the JSON bytes of `messages` (or of
    history[start:end]), nothing decoded: every string value of a key ending in `id` (a superset of
    the tool_use ids and tool_result tool_use_ids) is checked, so True is certain and False sends
    the caller to the exact check on the decoded history; an id with an escape in it, or thousands
    of bytes long, counts as not fitting. The regex reads every byte (2.5 GB/s: 1.1 ms for a 2 MB
    screenshot's base64); in `bytes`, runs without a quote are found by memchr and left out."""
    if end is None:  # (a whole history: a short body's, or a part copied)
        found = _ID_VALUES.findall(history)
    elif type(history) is bytes and end - start > 2 * _RUN:
        found = []
        for low, high in _read_parts(history, start, end):
            found += _ID_VALUES.findall(history, low, high)
    else:
        found = _ID_VALUES.findall(history, start, end)
    if not found:
        return True
    return all(value and end == b'"' for value, end in found) and \
        _SAFE_BYTES.fullmatch(b"".join([value for value, _ in found])) is not None


def _read_parts(raw: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The parts of raw[start:end] the regex reads: every run of _RUN bytes or more without a quote
    left out, but for its first byte (a value of an id key cut there ends in no quote: not fitting)
    and the two before its closing quote (a key ending in `id`). Such a run holds a whole window of
    _RUN // 2 bytes tiled from anywhere before it: one memchr a window."""
    at = window = start
    half = _RUN // 2
    while window + half <= end:
        if raw.find(b'"', window, window + half) >= 0:
            window += half
            continue
        opened = raw.rfind(b'"', at, window)
        run_start = opened + 1 if opened >= 0 else at
        closed = raw.find(b'"', window + half, end)
        if closed < 0:
            closed = end
        if closed - run_start < _RUN:  # (a short one: read)
            window = closed + 1
            continue
        yield at, run_start + 1
        at = max(closed - 2, run_start + 1)
        window = closed + 1
    yield at, end


class CallIds(list[str]):
    """A chat history's tool call ids with the lengths of the shortest and the longest of them,
    which is all a rule of lengths checks (all_fit): measured as ids are added, so an agent's turn
    read on from its last one measures its new ids only, not the hundred or more it carries (a set
    of them and their lengths cost some 55,000 instructions a turn of 120)."""

    __slots__ = ("longest", "shortest")

    def __init__(self, ids: Iterable[str] = (), lengths: tuple[int, int] | None = None) -> None:
        super().__init__(ids)
        if lengths is None:
            measured = list(map(len, self))
            lengths = (min(measured), max(measured)) if measured else (0, 0)
        self.shortest, self.longest = lengths

    def plus(self, added: list[str]) -> CallIds:
        """These ids and `added` after them (a copy: neither is changed)."""
        if not added:
            return CallIds(self, (self.shortest, self.longest))
        more = CallIds(added)
        if not self:
            return more
        return CallIds([*self, *more], (min(self.shortest, more.shortest), max(self.longest, more.longest)))


def all_fit(ids: list[str], rule: IdRule) -> bool:
    """Whether every id in `ids` fits `rule`: each distinct id checked once (a call and its result
    carry the same one). A rule of lengths only (OpenAI's, a Responses upstream's) is checked on the
    shortest and longest id: a coding agent's turn carries a hundred ids or more, every turn, and
    CallIds has their lengths measured already."""
    if rule.pattern is None and isinstance(ids, CallIds):
        return not ids or (ids.shortest > 0 and (rule.max_len is None or ids.longest <= rule.max_len))
    distinct = set(ids)
    if rule.pattern is None and distinct:
        lengths = list(map(len, distinct))
        return min(lengths) > 0 and (rule.max_len is None or max(lengths) <= rule.max_len)
    return all(map(rule.fits, distinct))


# the Responses items that carry a call_id: calls, and the outputs that answer them
CALL_KINDS = ("function_call", "custom_tool_call")
OUTPUT_KINDS = ("function_call_output", "custom_tool_call_output")
_CALL_ITEMS = CALL_KINDS + OUTPUT_KINDS


def _fit_item(item: Any, rule: IdRule) -> Any:
    if isinstance(item, dict) and item.get("type") in _CALL_ITEMS:
        call_id = item.get("call_id")
        if isinstance(call_id, str) and not rule.fits(call_id):
            return dict(item, call_id=rule.make(call_id))
    return item


def fit_responses_ids(body: Body, rule: IdRule = RESPONSES) -> Body:
    """A Responses request with the `call_id` of every function_call, custom_tool_call and output
    item in `input` fitted to `rule` (a call and its output get the same replacement, so they stay
    a pair); the very same object when every id already fits."""
    items = body.get("input")
    if not isinstance(items, list) or scan_call_items(items, rule) == (True, None):
        return body  # (the scan stops at an output that answers nothing: then every item is fitted)
    fitted = changed_items(items, lambda item: _fit_item(item, rule))
    return body if fitted is None else dict(body, input=fitted)


def scan_call_items(items: list[Any], rule: IdRule, start: int = 0,
                    made: Iterable[str] = ()) -> tuple[bool, tuple[int, Any] | None]:
    """One pass over a Responses input, nothing built (an agent's turn carries its whole
    conversation): whether every call_id of its function_call, custom_tool_call and output items
    fits `rule`, and the first output item (its index and call_id) that answers no call before it,
    which the Responses API refuses (None when every output answers). From `start` on only, when
    what comes before is known to pass (its ids fit, its outputs answer) and made the calls `made`."""
    fits = rule.fits
    calls: set[str] = set(made)
    all_fit = True
    for i, item in enumerate(islice(items, start, None), start):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind in CALL_KINDS:
            call_id = item.get("call_id")
            if isinstance(call_id, str):
                calls.add(call_id)
                all_fit = all_fit and fits(call_id)
        elif kind in OUTPUT_KINDS:
            call_id = item.get("call_id")
            if call_id not in calls:
                return all_fit, (i, call_id)
            all_fit = all_fit and fits(call_id)
    return all_fit, None


def calls_answered_and_fit(calls: list[tuple[str, Any]], rule: IdRule) -> bool:
    """scan_call_items(items, rule) == (True, None) over the (type, call_id) of each item, as
    input_bytes reads them off the client's bytes: every call_id fits `rule` and every output item
    answers a call before it."""
    return answered_calls(calls, rule) is not None


def answered_calls(calls: list[tuple[Any, Any]], rule: IdRule, made: Iterable[str] = ()) -> set[str] | None:
    """The call ids made by `calls` (the (type, call_id) of each item) after those of `made` (items
    before them, which passed), when every call_id fits `rule` and every output answers a call made
    before it; None otherwise."""
    fits = rule.fits
    known: set[str] = set(made)
    for kind, call_id in calls:
        if kind in CALL_KINDS:
            if isinstance(call_id, str):
                if not fits(call_id):
                    return None
                known.add(call_id)
        elif kind in OUTPUT_KINDS and (call_id not in known or not fits(call_id)):
            return None
    return known


def unanswered_output(items: list[Any]) -> tuple[int, Any] | None:
    """The first output item (its index and call_id) whose call_id no call item before it has; None
    when every output answers a call."""
    return scan_call_items(items, ANY)[1]
