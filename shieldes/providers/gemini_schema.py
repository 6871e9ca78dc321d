"""JSON Schemas as Google's generateContent takes them (`responseSchema`, function declarations'
`parameters`): its OpenAPI subset, a proto message that refuses any field it does not know
("Unknown name ...: Cannot find field"). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body

# The fields of Google's Schema message that take a JSON Schema keyword's value as it is
_DATA = frozenset({"title", "description", "nullable", "enum", "maxItems", "minItems", "required",
                   "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
                   "propertyOrdering", "default", "minimum", "maximum"})
# The string and number formats Google takes; others ("email", "uri", ...) are refused
_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})
_LOCAL = ("#/$defs/", "#/definitions/")
# Bounds on what inlining `$ref`s may make of a schema: a few definitions that each use the next
# twice expand to 2^n subschemas (a kilobyte of request worth minutes of the node's CPU), and a
# long chain of them nests past Python's recursion limit.
MAX_SUBSCHEMAS = 10_000
MAX_DEPTH = 100
# Keywords whose value holds subschemas side by side: that map or list is no level of its own, each
# subschema in it is one (check_nesting)
_SIDE_BY_SIDE = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas",
                           "anyOf", "oneOf", "allOf", "prefixItems"})


def check_nesting(schema: Any, where: str) -> None:
    """Refuse a schema nested over MAX_DEPTH levels, in JSON Schema's or Google's format: each
    subschema (under `properties`, `items`, `anyOf`, ...) is a level, and so is each array or object
    in a keyword's value (an `enum`'s, a `default`'s). Past it, the translations (and the JSON
    encoder, which stops at 255 levels of arrays and objects) cannot carry the schema. Iterative: a
    schema nested past Python's recursion limit is measured too."""
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        value, level = stack.pop()
        if level > MAX_DEPTH:
            raise InvalidRequest(f"{where}: the schema nests over {MAX_DEPTH} levels deep (each subschema under "
                                 "properties, items or anyOf is a level, as is each array or object in a value); "
                                 f"send a flatter schema, at most {MAX_DEPTH} levels deep", param=where)
        pairs = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, sub in pairs:
            if not isinstance(sub, (dict, list)):
                continue
            if key in _SIDE_BY_SIDE and isinstance(value, dict):
                inner = sub.values() if isinstance(sub, dict) else sub
                stack.extend((s, level + 1) for s in inner if isinstance(s, (dict, list)))
            else:
                stack.append((sub, level + 1))


@dataclass(slots=True)
class _Walk:
    defs: dict[str, Any]
    where: str
    made: int = 0  # subschemas written so far

    def one_more(self, depth: int) -> None:
        self.made += 1
        if self.made > MAX_SUBSCHEMAS:
            raise InvalidRequest(f"{self.where}: the schema expands to over {MAX_SUBSCHEMAS} subschemas once its "
                                 "$refs are inlined (Gemini's schema subset has no references): define the shared "
                                 "parts fewer times, or send a smaller schema", param=self.where)
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"{self.where}: the schema nests over {MAX_DEPTH} levels deep once its $refs are "
                                 "inlined: send a flatter schema", param=self.where)


def gemini_schema(schema: Body, where: str) -> Body:
    """`schema` in Gemini's subset: local `$ref`s (`#/$defs/Name`, as pydantic and zod write nested
    models) replaced by the definition they point to (the subset has no references); a `type` list
    as one type (`["string", "null"]`: a nullable string; several: `anyOf`); `oneOf` as `anyOf`, a
    lone `allOf` merged; `const` as a one-value `enum`; formats Google does not know, and every
    keyword outside the subset (`additionalProperties`, `exclusiveMinimum`, `$schema`, ...: they only
    narrow what is valid) left out; the names under `properties` kept whatever they are; `properties`
    and `required` only on objects (Google refuses them elsewhere: in a type union they go to its
    object branch), `required` naming only properties the node defines (Google refuses others as
    "property is not defined"; MCP servers write such schemas). A
    reference that cannot be inlined (recursive, or not into the schema's own definitions) is
    refused with a 400 naming `where`."""
    check_nesting(schema, where)
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    return _clean(schema, _Walk(defs, where), (), 0)


def _clean(value: Any, walk: _Walk, inside: tuple[str, ...], depth: int) -> Body:
    if not isinstance(value, dict):
        return {}  # `true` (anything) or a malformed subschema: no constraint
    walk.one_more(depth)
    defs, where, deeper = walk.defs, walk.where, depth + 1
    ref = value.get("$ref")
    if ref is not None:
        name = next((ref[len(p):] for p in _LOCAL if isinstance(ref, str) and ref.startswith(p)), None)
        if name is None or name not in defs:
            raise InvalidRequest(f"{where}: $ref {ref!r} does not point to a definition in the schema's $defs; "
                                 "Gemini takes no references to other documents: inline that schema", param=where)
        if name in inside:
            raise InvalidRequest(f"{where}: the schema is recursive ({name!r} refers to itself through $ref), "
                                 "which Gemini's schema subset cannot express: give the nesting a fixed depth",
                                 param=where)
        target = _clean(defs[name], walk, (*inside, name), deeper)
        siblings = _clean({k: v for k, v in value.items() if k != "$ref"}, walk, inside, deeper)
        return {**target, **siblings}  # a description next to the $ref describes this use of it
    out: Body = {}
    for key, sub in value.items():
        if key == "properties" and isinstance(sub, dict):
            out[key] = {name: _clean(s, walk, inside, deeper) for name, s in sub.items()}
        elif key == "items" and isinstance(sub, dict):
            out[key] = _clean(sub, walk, inside, deeper)
        elif key in ("anyOf", "oneOf") and isinstance(sub, list):
            out["anyOf"] = [_clean(s, walk, inside, deeper) for s in sub]
        elif key == "allOf" and isinstance(sub, list) and len(sub) == 1:
            out = {**_clean(sub[0], walk, inside, deeper), **out}
        elif key == "type":
            out.update(_type(sub))
        elif key == "const" and isinstance(sub, str):
            out.setdefault("enum", [sub])
        elif key == "format":
            if sub in _FORMATS:
                out[key] = sub
        elif key in _DATA:
            out[key] = sub
    return _object_keywords(out)


_OBJECT_ONLY = ("properties", "required")


def _object_keywords(node: Body) -> Body:
    """`node` with `properties` and `required` where Google takes them: on an object (a node with
    properties but no type is one), in the object branch of a type union, nowhere else; `required`
    naming only the properties defined beside it (left out when none is)."""
    kind = node.get("type")
    if kind is None and "anyOf" in node and any(k in node for k in _OBJECT_ONLY):
        moved = {k: node.pop(k) for k in _OBJECT_ONLY if k in node}
        node["anyOf"] = [_object_keywords({**branch, **moved}) if _is_object(branch.get("type")) else branch
                         for branch in node["anyOf"]]
        return node
    if kind is None and "properties" in node and "anyOf" not in node:
        node = {"type": "object", **node}
    elif not _is_object(kind):
        return {k: v for k, v in node.items() if k not in _OBJECT_ONLY}
    if "required" in node:
        defined: Body = node["properties"] if isinstance(node.get("properties"), dict) else {}
        required = [name for name in node["required"] if name in defined] \
            if isinstance(node["required"], list) else []
        if required:
            node["required"] = required
        else:
            del node["required"]
    return node


def _is_object(kind: Any) -> bool:
    return isinstance(kind, str) and kind.lower() == "object"


def _type(kind: Any) -> Body:
    """A `type` keyword: one type as it is; a list of them (JSON Schema's union) as one nullable
    type or as `anyOf` (Google's `type` holds one)."""
    if not isinstance(kind, list):
        return {"type": kind}
    kinds = [k for k in kind if k != "null"]
    nullable = {"nullable": True} if len(kinds) < len(kind) else {}
    if len(kinds) == 1:
        return {"type": kinds[0], **nullable}
    return {"anyOf": [{"type": k} for k in kinds], **nullable} if kinds else {"type": "null"}


# Google's Schema fields that are JSON Schema keywords as they are (the reverse of _DATA, but
# `nullable`, a type, and `example`/`propertyOrdering`, which only describe)
_AS_JSON = frozenset({"title", "description", "enum", "maxItems", "minItems", "required", "minProperties",
                      "maxProperties", "minLength", "maxLength", "pattern", "default", "minimum", "maximum",
                      "format"})


def json_schema(schema: Any) -> Body:
    """A Google Schema (`parameters`, `responseSchema`: upper-case types, `nullable`) as JSON
    Schema, for upstreams that take JSON Schema: types in lower case, `nullable` as a `null` type,
    `propertyOrdering` and `example` (hints to Google's decoder) left out."""
    if not isinstance(schema, dict):
        return {}
    out: Body = {}
    for key, sub in schema.items():
        if key == "type" and isinstance(sub, str) and sub.upper() != "TYPE_UNSPECIFIED":
            out["type"] = sub.lower()
        elif key == "properties" and isinstance(sub, dict):
            out[key] = {name: json_schema(s) for name, s in sub.items()}
        elif key == "items":
            out[key] = json_schema(sub)
        elif key == "anyOf" and isinstance(sub, list):
            out[key] = [json_schema(s) for s in sub]
        elif key in _AS_JSON:
            out[key] = sub
    if schema.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out
