"""The error of a request whose every model failed names each model tried and why (pure)."""

from __future__ import annotations

from shieldes.errors import RateLimited, UpstreamError, UpstreamTimeout
from shieldes.gateway.upstream_errors import WHY_CHARS, ModelTried, exhausted, models_tried
from shieldes.providers.base import THROTTLED, UpstreamFailure
from shieldes.routing.router import Route


def _scrub(text: str) -> str:
    return text.replace("sk-secret", "[redacted]")


ROUTE = Route("smart", "gpt-4o", (), False, ("haiku",))


def test_each_model_is_named_with_why_it_failed_in_order() -> None:
    models = [
        ModelTried("smart", "azure", UpstreamFailure("boom with sk-secret", status=500, retryable=True)),
        ModelTried("haiku", "claude", UpstreamFailure("read timed out", status=None, retryable=True, timeout=True)),
        ModelTried("mini", skipped="not called: openai at its quota"),
        ModelTried("empty", skipped="no deployment serves it"),
    ]
    assert models_tried(models, _scrub) == (
        "'smart' (deployment 'azure': 500: boom with [redacted]), then fallback 'haiku' (deployment 'claude': "
        "timed out: read timed out), then fallback 'mini' (not called: openai at its quota), then fallback "
        "'empty' (no deployment serves it)")
    error = exhausted(ROUTE, models[1].failure, 2, _scrub, models)
    assert isinstance(error, UpstreamTimeout)  # (the kind is still the last failure's)
    assert error.message.startswith("every model tried for 'smart' failed (2 attempt(s)): 'smart' (")
    assert error.message.endswith("retry later, or check the deployments named (`shieldes provider list`), "
                                  "or name a fallback served by another provider")


def test_a_long_upstream_message_is_cut_so_every_model_stays_readable() -> None:
    long = UpstreamFailure("x" * 5000, status=502, retryable=True)
    text = models_tried([ModelTried("a", "d1", long), ModelTried("b", "d2", long)], _scrub)
    assert len(text) < 2 * (WHY_CHARS + 60) and text.count("...") == 2


def test_without_fallbacks_the_error_is_as_before() -> None:
    failure = UpstreamFailure("slow down", status=429, retryable=True, code=THROTTLED, retry_after=3)
    error = exhausted(ROUTE, failure, 1, _scrub, [ModelTried("smart", "azure", failure)])
    assert isinstance(error, RateLimited) and error.message.startswith("every upstream for model 'smart' is rate")
    both = exhausted(ROUTE, failure, 2, _scrub,
                     [ModelTried("smart", "azure", failure), ModelTried("haiku", "c", failure)])
    assert isinstance(both, RateLimited) and "then fallback 'haiku'" in both.message
    assert isinstance(exhausted(ROUTE, None, 0, _scrub), UpstreamError)
