"""What broke a stream after it opened, read off each upstream kind's own words."""

from __future__ import annotations

from typing import Any

from shieldes.providers.base import CONTEXT_LENGTH, THROTTLED, UpstreamFailure
from shieldes.providers.bedrock_answers import stream_exception
from shieldes.providers.stream_failures import (
    BROKEN_STREAM,
    INVALID_STREAM,
    OVERLOADED_STREAM,
    RATE_LIMITED_STREAM,
    TOO_LONG_STREAM,
    classify,
)


def failed(body: Any = None, status: int | None = None, code: str | None = None) -> UpstreamFailure:
    return UpstreamFailure("it broke", status=status, retryable=True, body=body, code=code)


def test_each_upstreams_mid_stream_error_is_named_for_what_it_is() -> None:
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert classify(failed(anthropic, 529)) == OVERLOADED_STREAM
    assert classify(failed({"type": "error", "error": {"type": "rate_limit_error"}})) == RATE_LIMITED_STREAM
    assert classify(failed({"type": "error", "error": {"type": "invalid_request_error"}})) == INVALID_STREAM
    assert classify(failed({"type": "error", "error": {"type": "api_error"}})) == BROKEN_STREAM
    # an OpenAI-compatible server's error chunk
    assert classify(failed({"error": {"type": "server_error", "code": "server_is_overloaded"}})) == OVERLOADED_STREAM
    assert classify(failed({"error": {"message": "slow", "type": None, "code": "rate_limit_exceeded"}})) \
        == RATE_LIMITED_STREAM
    assert classify(failed({"error": {"code": CONTEXT_LENGTH}})) == TOO_LONG_STREAM
    # Google's error object as a stream event
    assert classify(failed({"error": {"code": 503, "status": "UNAVAILABLE"}})) == OVERLOADED_STREAM
    assert classify(failed({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}})) == RATE_LIMITED_STREAM
    assert classify(failed({"error": {"code": 400, "status": "INVALID_ARGUMENT"}})) == INVALID_STREAM
    assert classify(failed({"error": {"code": 500, "status": "INTERNAL"}})) == BROKEN_STREAM
    # Bedrock's exception events
    assert classify(stream_exception("throttlingException", {"message": "Too many tokens"})) == RATE_LIMITED_STREAM
    assert classify(stream_exception("serviceUnavailableException", {"message": "busy"})) == OVERLOADED_STREAM
    assert classify(stream_exception("validationException", {"message": "bad"})) == INVALID_STREAM
    assert classify(stream_exception("validationException", {"message": "Input is too long"})) == TOO_LONG_STREAM
    assert classify(stream_exception("internalServerException", {"message": "oops"})) == BROKEN_STREAM
    model_overloaded = {"message": "Received error from the model: overloaded", "originalStatusCode": 529}
    assert classify(stream_exception("modelStreamErrorException", model_overloaded)) == OVERLOADED_STREAM
    assert classify(stream_exception("modelStreamErrorException", {"message": "x"})) == BROKEN_STREAM
    # a cut connection, a chunk nobody can read: broken
    assert classify(failed()) == BROKEN_STREAM
    assert classify(failed(code=THROTTLED)) == RATE_LIMITED_STREAM
    assert classify(failed(status=429)) == RATE_LIMITED_STREAM


def test_each_client_api_has_its_own_name_for_each_kind() -> None:
    assert (OVERLOADED_STREAM.anthropic_type, OVERLOADED_STREAM.openai_code, OVERLOADED_STREAM.responses_code) == (
        "overloaded_error", "server_is_overloaded", "server_is_overloaded")
    assert (RATE_LIMITED_STREAM.anthropic_type, RATE_LIMITED_STREAM.responses_code) == (
        "rate_limit_error", "rate_limit_exceeded")
    assert (BROKEN_STREAM.anthropic_type, BROKEN_STREAM.openai_code, BROKEN_STREAM.responses_code) == (
        "api_error", "upstream_error", "server_error")
