"""A model name over the bound (docs/security.md, "Input limits": 256 characters) is refused with a
message that says the bound, not that the name is empty."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shieldes.errors import InvalidRequest
from shieldes.gateway.media_routes import _model_name
from shieldes.gateway.routes import MAX_MODEL_NAME, _model


def test_the_bound_is_the_documented_one() -> None:
    assert MAX_MODEL_NAME == 256


@pytest.mark.parametrize("check", [lambda m: _model({"model": m}), lambda m: _model_name(m, None)],
                         ids=["model routes", "media routes"])
def test_a_name_over_the_bound_is_refused_naming_it(check: Callable[[str], str]) -> None:
    assert check("m" * MAX_MODEL_NAME) == "m" * MAX_MODEL_NAME
    with pytest.raises(InvalidRequest, match=f"at most {MAX_MODEL_NAME} characters"):
        check("m" * (MAX_MODEL_NAME + 1))
