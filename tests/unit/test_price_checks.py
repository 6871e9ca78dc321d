"""The words `pricing set` refuses per-use and per-modality prices with, pinned: the two checks share
one body, and what an operator reads must stay as it was."""

from __future__ import annotations

import pytest

from shieldes.errors import CommandRejected
from shieldes.projections.shared_commands import check_modalities, check_per_use

PER_USE_CASES = [
    ((("web_search", 0.01),),
     "--per-use web_search=...: unknown tool; use one of file_search, container (e.g. --per-use "
     "file_search=0.0025 --per-use container=0.03; web searches: --per-web-search)"),
    ((("container", "0.03"),), "--per-use container='0.03': the price must be a number of USD per use"),
    ((("container", True),), "--per-use container=True: the price must be a number of USD per use"),
    ((("container", -1.0),), "--per-use container price must be a number between 0 and 1000000000000, got -1.0"),
]
MODALITY_CASES = [
    ((("video_input", 1.0),),
     "--modality video_input=...: unknown kind; use one of audio_input, audio_cache_read, audio_output, "
     "image_input, image_cache_read, image_output (e.g. --modality audio_input=40 --modality "
     "audio_output=80, USD per 1M tokens)"),
    ((("audio_input", None),), "--modality audio_input=None: the price must be a number of USD per 1M tokens"),
    ((("audio_input", float("nan")),), "--modality audio_input price must be a number between 0 and 1000000000000, "
                                       "got nan"),
]


@pytest.mark.parametrize(("given", "message"), PER_USE_CASES)
def test_per_use_prices_are_refused_in_these_words(given: tuple[tuple[str, float], ...], message: str) -> None:
    with pytest.raises(CommandRejected) as info:
        check_per_use(given)
    assert info.value.message == message


@pytest.mark.parametrize(("given", "message"), MODALITY_CASES)
def test_modality_prices_are_refused_in_these_words(given: tuple[tuple[str, float], ...], message: str) -> None:
    with pytest.raises(CommandRejected) as info:
        check_modalities(given)
    assert info.value.message == message


def test_prices_by_name_come_back_as_floats_from_pairs_or_a_mapping_and_none_when_empty() -> None:
    assert check_per_use((("container", 3),)) == {"container": 3.0}
    assert check_per_use({"file_search": 0.0025, "container": 0}) == {"file_search": 0.0025, "container": 0.0}
    assert check_modalities({"audio_input": 40}) == {"audio_input": 40.0}
    assert check_per_use(()) is None and check_modalities({}) is None
