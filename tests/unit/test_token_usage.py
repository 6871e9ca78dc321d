"""TokenUsage: a value whose equality is the billed counts, immutable, cheap to build."""

from __future__ import annotations

import operator

import pytest

from shieldes.providers.base import TokenUsage


def test_equality_compares_the_billed_counts_not_the_reasoning_breakdown() -> None:
    a = TokenUsage(10, 5, reasoning_tokens=3)
    b = TokenUsage(10, 5)
    assert a == b and operator.ne(a, b) is False  # __ne__ too, not tuple's (which would see reasoning)
    assert hash(a) == hash(b) and len({a, b}) == 1
    flex = TokenUsage(10, 5, service_tier="flex")
    assert a != flex and operator.eq(a, flex) is False
    assert TokenUsage(10, 5, modal=(("audio_input", 2),)) != b
    assert a.reasoning_tokens == 3 and b.reasoning_tokens is None


def test_fields_cannot_be_set() -> None:
    usage = TokenUsage(10, 5)
    with pytest.raises(AttributeError):
        usage.prompt_tokens = 11  # type: ignore[misc]
    assert usage._replace(completion_tokens=7) == TokenUsage(10, 7)


def test_defaults_and_keywords() -> None:
    usage = TokenUsage(prompt_tokens=3, completion_tokens=4, cache_read_tokens=1, containers=2)
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens, usage.web_search_requests,
            usage.file_search_calls, usage.service_tier, usage.modal) == (0, 0, 0, 0, None, ())
    assert usage.containers == 2 and usage.cache_read_tokens == 1


def test_the_counts_pricing_reads_as_one_slice() -> None:
    # usage/pricing.py tells a text-only usage by usage[2:8] == (0,) * 6: those are these fields
    assert TokenUsage._fields[2:8] == ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                                       "web_search_requests", "file_search_calls", "containers")
