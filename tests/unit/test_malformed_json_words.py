"""Every reader of a request body refuses one that does not parse in the same words: the parser's
reason, cut at 200 characters, inside one sentence (an equivalence test: the readers share it)."""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson
import pytest

from shieldes.errors import InvalidRequest
from shieldes.gateway.request_fields import json_object
from shieldes.gateway.top_level import MESSAGES_HISTORY, TopLevel, read_chat, split

WORDS = re.compile(r"^malformed JSON body \((?P<reason>.+)\): send one valid JSON object$", re.S)
READERS: list[Callable[[bytes], object]] = [json_object, split, read_chat, lambda raw: TopLevel(raw, MESSAGES_HISTORY)]


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize("raw", [b'{"model": tru}', b'{"messages": [{"role": "user", "content": "hi"}, ]}',
                                 b'{"model": "m"} trailing'])
def test_a_body_that_does_not_parse_is_refused_in_one_sentence(read: Callable[[bytes], object], raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        read(raw)
    found = WORDS.match(info.value.message)
    assert found is not None, info.value.message
    assert 0 < len(found["reason"]) <= 200 and info.value.status == 400


def test_the_reason_is_the_parsers_own() -> None:
    raw = b'{"model": tru}'
    with pytest.raises(orjson.JSONDecodeError) as parsed:
        orjson.loads(raw)
    with pytest.raises(InvalidRequest) as info:
        json_object(raw)
    assert info.value.message == f"malformed JSON body ({str(parsed.value)[:200]}): send one valid JSON object"


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize("raw", [b'{"model": "m", "messages": [{"role": "user", "content": "cut \\ud83d"}]}',
                                 b'{"model": "m", "user": "\\udc00 alone"}'])
def test_a_lone_surrogate_escape_is_named_not_called_a_truncated_body(read: Callable[[bytes], object],
                                                                     raw: bytes) -> None:
    """msgspec calls a lone surrogate escape (a string cut through an emoji, as JavaScript's slice
    leaves it) "Input data was truncated", which sent the user looking for a cut body."""
    with pytest.raises(InvalidRequest) as info:
        read(raw)
    found = WORDS.match(info.value.message)
    assert found is not None and "surrogate" in found["reason"] and "truncated" not in found["reason"], \
        info.value.message


@pytest.mark.parametrize("read", READERS)
def test_a_cut_body_is_still_called_cut(read: Callable[[bytes], object]) -> None:
    with pytest.raises(InvalidRequest) as info:
        read(b'{"model": "m", "messages": [{"role": "user", "content": "hi"')
    assert "surrogate" not in info.value.message and WORDS.match(info.value.message) is not None
