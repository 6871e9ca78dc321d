"""A model name over its bound (docs/security.md, "Input limits": 256 characters in a request, 128 in
the configuration) is refused with a message that says the bound, not that the name is empty."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shieldes.errors import CommandRejected, InvalidRequest
from shieldes.gateway.media_routes import _model_name
from shieldes.gateway.request_fields import MAX_MODEL_NAME, model_field
from shieldes.projections.commands import MAX_NAME, check_model


def test_the_bound_is_the_documented_one() -> None:
    assert MAX_MODEL_NAME == 256


@pytest.mark.parametrize("check", [lambda m: model_field({"model": m}), lambda m: _model_name(m, None)],
                         ids=["model routes", "media routes"])
def test_a_name_over_the_bound_is_refused_naming_it(check: Callable[[str], str]) -> None:
    assert check("m" * MAX_MODEL_NAME) == "m" * MAX_MODEL_NAME
    with pytest.raises(InvalidRequest, match=f"at most {MAX_MODEL_NAME} characters"):
        check("m" * (MAX_MODEL_NAME + 1))


def test_a_configured_model_name_over_its_bound_is_refused_naming_it() -> None:
    """`provider add --models`, `pricing set`, `routing set`...: names up to 128 characters."""
    check_model("m" * MAX_NAME, patterns=True)
    with pytest.raises(CommandRejected, match=f"use 1-{MAX_NAME} letters"):
        check_model("m" * (MAX_NAME + 1), patterns=True)
