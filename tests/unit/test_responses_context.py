"""A request's ResponseContext is built when first read, once: a pass-through turn reads only its
previous_response_id, and a translated one gets the same id however often it reads it."""

from __future__ import annotations

from shieldes.responses.objects import ContextOf, ResponseContext, never_stored


def test_the_previous_response_id_is_read_without_building_the_context() -> None:
    ctx = ContextOf({"model": "m", "previous_response_id": "resp_1", "input": "hi"}, True, 1_700_000_000, "m")
    assert ctx.previous == "resp_1"
    assert ctx._built is None  # (no id minted, no echoed fields picked)
    assert ContextOf({"model": "m", "input": "hi"}, True, 1, "m").previous is None


def test_the_context_is_built_once_as_response_context_of_builds_it() -> None:
    request = {"model": "m", "input": "hi", "temperature": 0.5, "metadata": {"a": "b"}, "text": {"verbosity": "low"}}
    ctx = ContextOf(request, False, 1_700_000_000, "m")
    built = ctx.context
    assert ctx.context is built  # (one id for the turn)
    assert built == ResponseContext.of(request, built.id, 1_700_000_000, "m")
    assert built.id.startswith(f"resp_{1_700_000_000:08x}") and never_stored(built.id)
    assert not never_stored(ContextOf(request, True, 1_700_000_000, "m").context.id)
