"""Bedrock Runtime request bodies checked against the service model botocore ships
(`botocore/data/bedrock-runtime/*/service-2.json`: the real API's shape), as Bedrock checks them:
no field the shape does not declare, every required one, one member of a union, enum values and
JSON types. Document members (`additionalModelRequestFields`, a tool's `inputSchema.json`, a
toolUse's `input`) hold any JSON.

    problem("Converse", body)   # None, or Bedrock's ValidationException message for the first fault
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
from botocore.model import Shape

_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "blob": (str,), "boolean": (bool,), "integer": (int,),
                                       "long": (int,), "float": (int, float), "double": (int, float)}


@functools.cache
def _operation_input(operation: str) -> Shape:
    model = botocore.session.Session().get_service_model("bedrock-runtime")
    shape = model.operation_model(operation).input_shape
    assert shape is not None
    return shape


def extraneous(path: str, name: str) -> str:
    return (f"Malformed input request: {path}: extraneous key [{name}] is not permitted, please reformat your input "
            "and try again.")


def _constraint(path: str, what: str) -> str:
    return f"1 validation error detected: Value at '{path}' failed to satisfy constraint: {what}"


def _check(shape: Shape, value: Any, path: str) -> str | None:
    if shape.metadata.get("document"):
        return None
    kind = shape.type_name
    if kind == "structure":
        return _structure(shape, value, path)
    if kind == "list":
        if not isinstance(value, list):
            return _constraint(path, "Member must be a list")
        member = shape.member
        return next((p for i, v in enumerate(value) if (p := _check(member, v, f"{path}.{i + 1}.member"))), None)
    if kind == "map":
        if not isinstance(value, dict):
            return _constraint(path, "Member must be a map")
        return next((p for k, v in value.items() if (p := _check(shape.value, v, f"{path}.{k}"))), None)
    if not isinstance(value, _TYPES.get(kind, (object,))) or (kind in ("integer", "long", "float", "double")
                                                                and isinstance(value, bool)):
        return _constraint(path, f"Member must be of type {kind}")
    enum = getattr(shape, "enum", None)
    if enum and value not in enum:
        return _constraint(path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
    return None


def _structure(shape: Shape, value: Any, path: str) -> str | None:
    if not isinstance(value, dict):
        return _constraint(path, "Member must be an object")
    members = {n: m for n, m in shape.members.items()
               if m.serialization.get("location") is None}
    where = path or "#"
    for name in value:
        if name not in members:
            return extraneous(where, name)
    for name in shape.metadata.get("required", ()):
        if name in members and name not in value:
            return _constraint(f"{path}.{name}" if path else name, "Member must not be null")
    if shape.metadata.get("union") and len([v for v in value.values() if v is not None]) != 1:
        return _constraint(where, f"exactly one of [{', '.join(members)}] must be set")
    for name, item in value.items():
        if item is None:
            continue
        problem = _check(members[name], item, f"{path}.{name}" if path else name)
        if problem:
            return problem
    return None


def problem(operation: str, body: Any) -> str | None:
    """Bedrock's ValidationException message for the first fault of `body` as the input of
    `operation` (Converse, ConverseStream, CountTokens), or None."""
    return _check(_operation_input(operation), body, "")
