"""The rate a budget holds a request that may fall back at: no cheaper than any model it may reach,
for its prompt and any completion, tiered and modality prices included."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shieldes.projections.state import LongContext, Price
from shieldes.providers.base import TokenUsage
from shieldes.usage.pricing import cost_nusd, dearest, held, rate_of, tokens_nusd

DEAR_PROMPT = rate_of(Price(30.0, 1.0))  # a dear prompt, a cheap answer
DEAR_ANSWER = rate_of(Price(1.0, 60.0))
LONG = rate_of(Price(1.25, 10.0, long_context=LongContext(200_000, 2.5, 15.0)))  # Gemini 2.5 Pro's shape
AUDIO = rate_of(Price(2.5, 10.0, modalities=(("audio_input", 40.0), ("audio_output", 80.0))))


def test_each_price_is_the_dearest_any_model_has_so_no_completion_outgrows_the_hold() -> None:
    rate = dearest([DEAR_PROMPT, DEAR_ANSWER], 1000)
    assert (rate.input, rate.output) == (DEAR_PROMPT.input, DEAR_ANSWER.output)
    # the model dearest at a guessed completion of 256 tokens (its prompt) is the cheaper one at 4096
    assert tokens_nusd(DEAR_PROMPT, 1000, 256) > tokens_nusd(DEAR_ANSWER, 1000, 256)
    assert tokens_nusd(DEAR_ANSWER, 1000, 4096) > tokens_nusd(DEAR_PROMPT, 1000, 4096)
    assert tokens_nusd(rate, 1000, 4096) >= tokens_nusd(DEAR_ANSWER, 1000, 4096)


def test_a_long_prompt_is_held_at_the_long_context_tier_and_audio_at_its_audio_price() -> None:
    short, long = dearest([LONG, DEAR_PROMPT], 1000), dearest([LONG, DEAR_PROMPT], 300_000)
    assert short.output == LONG.output and long.output == LONG.long.output > LONG.output  # type: ignore[union-attr]
    audio = dearest([held(AUDIO), DEAR_PROMPT], 1000)
    assert audio.output == held(AUDIO).output > AUDIO.output and audio.input == held(AUDIO).input > DEAR_PROMPT.input


@given(prompt=st.integers(0, 400_000), completion=st.integers(0, 100_000))
def test_no_model_costs_more_than_the_hold(prompt: int, completion: int) -> None:
    rates = [DEAR_PROMPT, DEAR_ANSWER, LONG, held(AUDIO)]
    bound = cost_nusd(dearest(rates, prompt), TokenUsage(prompt, completion))
    for rate in rates:
        assert cost_nusd(rate, TokenUsage(prompt, completion)) <= bound
