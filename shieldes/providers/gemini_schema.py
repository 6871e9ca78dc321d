"""JSON Schemas as Google's generateContent takes them (`responseSchema`, function declarations'
`parameters`): its OpenAPI subset, a proto message that refuses any field it does not know. Pure."""

from __future__ import annotations

from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body

# JSON Schema keywords outside the subset, left out (they only narrow what JSON is valid)
_DROP = frozenset({"additionalProperties", "$schema", "strict", "$id", "$defs", "definitions", "$comment"})
# Keywords whose value is data, not a schema: copied as they are
_DATA = frozenset({"enum", "const", "default", "example", "examples", "required", "propertyOrdering"})
_LOCAL = ("#/$defs/", "#/definitions/")


def gemini_schema(schema: Body, where: str) -> Body:
    """`schema` in Gemini's subset: local `$ref`s (`#/$defs/Name`, as pydantic and zod write nested
    models) replaced by the definition they point to, since the subset has no references and its
    definitions are left out; the names under `properties` kept whatever they are (a parameter may
    be called `strict`). A reference that cannot be inlined (recursive, or not into the schema's
    own definitions) is refused with a 400 naming `where`."""
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    out = _clean(schema, defs, where, ())
    assert isinstance(out, dict)
    return out


def _clean(value: Any, defs: dict[str, Any], where: str, inside: tuple[str, ...]) -> Any:
    if isinstance(value, list):
        return [_clean(v, defs, where, inside) for v in value]
    if not isinstance(value, dict):
        return value
    ref = value.get("$ref")
    if ref is not None:
        name = next((ref[len(p):] for p in _LOCAL if isinstance(ref, str) and ref.startswith(p)), None)
        if name is None or name not in defs:
            raise InvalidRequest(f"{where}: $ref {ref!r} does not point to a definition in the schema's $defs; "
                                 "Gemini takes no references to other documents: inline that schema")
        if name in inside:
            raise InvalidRequest(f"{where}: the schema is recursive ({name!r} refers to itself through $ref), "
                                 "which Gemini's schema subset cannot express: give the nesting a fixed depth")
        target = _clean(defs[name], defs, where, (*inside, name))
        siblings = _clean({k: v for k, v in value.items() if k != "$ref"}, defs, where, inside)
        return {**target, **siblings}  # a description next to the $ref describes this use of it
    out: Body = {}
    for key, sub in value.items():
        if key in _DROP:
            continue
        if key == "properties" and isinstance(sub, dict):
            out[key] = {name: _clean(s, defs, where, inside) for name, s in sub.items()}
        elif key in _DATA:
            out[key] = sub
        else:
            out[key] = _clean(sub, defs, where, inside)
    return out
