"""A Responses `usage` object read as billed: the detail counts are taken only as positive JSON
integers (a bool, a float, a string, a negative number or a missing group counts 0), the input
and output counts as the upstream gave them."""

from __future__ import annotations

from typing import Any

import pytest

from shieldes.responses.objects import ResponsesUsage, usage_from_responses


@pytest.mark.parametrize(("usage", "read"), [
    (None, None),
    ({"output_tokens": 3}, None),
    ({"input_tokens": "9", "output_tokens": 3}, None),
    ({"input_tokens": 9, "output_tokens": 4}, ResponsesUsage(9, 4, 0, 0, 0)),
    ({"input_tokens": 9, "output_tokens": None, "input_tokens_details": {"cached_tokens": 0},
      "output_tokens_details": {"reasoning_tokens": 0}}, ResponsesUsage(9, 0, 0, 0, 0)),
    ({"input_tokens": 9, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 2},
      "output_tokens_details": {"reasoning_tokens": 3}}, ResponsesUsage(9, 4, 5, 3, 2)),
    ({"input_tokens": 9, "output_tokens": 4, "input_tokens_details": {"cached_tokens": True, "cache_write_tokens": -2},
      "output_tokens_details": {"reasoning_tokens": 3.0}}, ResponsesUsage(9, 4, 0, 0, 0)),
    ({"input_tokens": 9, "output_tokens": 4, "input_tokens_details": {"cached_tokens": "5", "cache_write_tokens": []},
      "output_tokens_details": None}, ResponsesUsage(9, 4, 0, 0, 0)),
    ({"input_tokens": 9, "output_tokens": 4, "input_tokens_details": [1], "output_tokens_details": {"x": 1}},
     ResponsesUsage(9, 4, 0, 0, 0)),
])
def test_a_usage_object_is_read_as_billed(usage: Any, read: ResponsesUsage | None) -> None:
    got = usage_from_responses(usage)
    assert got == read
    if got is not None:  # (plain ints: never a bool where a count is summed)
        assert all(type(v) is int for v in (got.cached_tokens, got.reasoning_tokens, got.cache_write_tokens))
