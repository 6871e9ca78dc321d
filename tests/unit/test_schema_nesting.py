"""How deep a schema nests (gemini_schema.check_nesting): each subschema is a level, and so is each
array or object in a keyword's value; the maps and lists that hold subschemas side by side are
not. Past MAX_DEPTH, a 400 naming the field; measured without recursion, however deep. And the
encoder's or Python's refusal of a value nested too deep is the client's error (nested_too_deep)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shieldes.errors import InvalidRequest, nested_too_deep
from shieldes.providers.gemini_inbound import check_schemas
from shieldes.providers.gemini_schema import MAX_DEPTH, check_nesting


def by_properties(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def by_any_of(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


@pytest.mark.parametrize("make", [by_properties, by_any_of])
def test_a_subschema_is_a_level_and_the_bound_is_exact(make: Any) -> None:
    check_nesting(make(MAX_DEPTH), "tools[0].function.parameters")
    with pytest.raises(InvalidRequest) as err:
        check_nesting(make(MAX_DEPTH + 1), "tools[0].function.parameters")
    assert err.value.param == "tools[0].function.parameters"
    assert err.value.message.startswith("tools[0].function.parameters: the schema nests over 100 levels deep")
    assert "send a flatter schema" in err.value.message


def test_a_value_nested_in_a_keyword_counts_and_any_depth_is_measured() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    check_nesting({"type": "array", "default": value}, "f")  # (the schema itself is level 0)
    with pytest.raises(InvalidRequest):
        check_nesting({"type": "array", "default": [value]}, "f")
    with pytest.raises(InvalidRequest):  # far past Python's recursion limit: no RecursionError
        check_nesting(by_properties(20_000), "f")


def test_a_generate_content_requests_schemas_are_named_by_their_field_in_either_case() -> None:
    deep = by_properties(MAX_DEPTH + 1)
    for tools, config, field in (
            ([{"functionDeclarations": [{"name": "f"}, {"name": "g", "parameters": deep}]}], None,
             "tools[0].functionDeclarations[1].parameters"),
            ([{"function_declarations": [{"name": "f", "parameters_json_schema": deep}]}], None,
             "tools[0].functionDeclarations[0].parametersJsonSchema"),
            (None, {"response_schema": deep}, "generationConfig.responseSchema")):
        with pytest.raises(InvalidRequest) as err:
            check_schemas(tools, config)
        assert err.value.param == field
    check_schemas([{"functionDeclarations": [{"name": "f", "parameters": by_properties(MAX_DEPTH)}]}],
                  {"responseSchema": by_properties(MAX_DEPTH)})


def test_the_encoders_and_pythons_refusals_are_the_clients_error() -> None:
    value: Any = 1
    for _ in range(300):
        value = [value]
    with pytest.raises(TypeError) as encoder:
        orjson.dumps(value)
    for exc in (encoder.value, RecursionError("maximum recursion depth exceeded")):
        refusal = nested_too_deep(exc)
        assert refusal is not None and refusal.status == 400
        assert "send it nested less deeply" in refusal.message and "Recursion" not in refusal.message
    assert nested_too_deep(TypeError("unsupported type")) is None
    assert nested_too_deep(ValueError("x")) is None
