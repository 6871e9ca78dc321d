"""The admin API's one route table: each route declares its method, path, scope, parameters and
body fields. The same declarations validate requests, guard them by role and generate the OpenAPI
document, so the documentation cannot drift from what the server does."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import psycopg
from aiohttp import web

from shieldes import plainjson
from shieldes.client_address import client_address
from shieldes.dbwait import READ_ADVICE, first_line
from shieldes.errors import Forbidden, InvalidRequest, ShieldesError
from shieldes.gateway.admin.auth import Principal, authenticate
from shieldes.gateway.admin.context import ADMIN, AdminContext
from shieldes.gateway.admin.oidc import ACTIVITY_HEADER, RENEWED_HEADER
from shieldes.gateway.admin.wording import CLI_WORDING, api_wording
from shieldes.gateway.middleware import REQUEST_ID, record_of, request_id
from shieldes.gateway.request_fields import read_json
from shieldes.roles import allows, roles_granting

SERVING = READ_ADVICE + "; chat requests are served meanwhile"
# Every admin answer, errors included: never cached (it may hold a secret shown once, or who holds
# which role), never sniffed as a page or framed, whatever a name or a message in it says.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}


def refused_read(exc: psycopg.Error) -> ShieldesError | None:
    """A read Postgres refused for a value it was given (not a database to retry)."""
    if isinstance(exc, psycopg.errors.DataError):
        return InvalidRequest(f"the database refused a query parameter ({first_line(exc)}); check the query "
                              "parameters (a NUL character, a value out of range)")
    return None

T = TypeVar("T")

PREFIX = "/admin/v1"
MAX_LIMIT = 1000  # a page of the audit log or the request log (read from Postgres)
# a page of a config list (keys, teams, providers, ...: read from the node's memory): a list of ten
# thousand teams is one request
MAX_LIST_LIMIT = 10_000
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


@dataclass(frozen=True)
class Field:
    """One body field or query parameter. `nullable`: JSON null is meaningful (it clears a value)."""

    name: str
    type: str  # string | integer | number | boolean | array (of strings) | object
    description: str
    required: bool = False
    nullable: bool = False
    enum: tuple[str, ...] | None = None

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.type == "array":
            out["items"] = {"type": "string"}
        if self.enum:
            out["enum"] = list(self.enum)
        if self.nullable:
            out["nullable"] = True
        return out

    def check(self, value: Any, where: str) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise InvalidRequest(f"{where} {self.name!r} may not be null: {self.description}", param=self.name)
        expected = _JSON_TYPES[self.type]
        if (isinstance(value, bool) and self.type != "boolean") or not isinstance(value, expected):
            raise InvalidRequest(f"{where} {self.name!r} must be of type {self.type}: {self.description}",
                                 param=self.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequest(f"{where} {self.name!r} must be a finite number", param=self.name)
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise InvalidRequest(f"{where} {self.name!r} must be a list of strings: {self.description}",
                                 param=self.name)
        if self.enum and value not in self.enum:
            raise InvalidRequest(f"{where} {self.name!r} must be one of {', '.join(self.enum)}, got {value!r}",
                                 param=self.name)
        return value

    def parse_query(self, raw: str) -> Any:
        if self.type == "integer":
            try:
                return self.check(int(raw), "query parameter")
            except ValueError:
                raise InvalidRequest(f"query parameter {self.name!r} must be a whole number, got {raw!r}",
                                     param=self.name) from None
        if self.type == "boolean":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise InvalidRequest(f"query parameter {self.name!r} must be true or false, got {raw!r}",
                                     param=self.name)
            return raw.lower() in ("true", "1")
        return self.check(raw, "query parameter")


PAGE_FIELDS = (
    Field("limit", "integer", f"page size, 1-{MAX_LIST_LIMIT} (default 100)"),
    Field("after", "string", "return items that sort after this cursor (the previous page's `next_after`; a "
                             "place in the order: no entry by that name need exist)"),
)


@dataclass
class Call:
    """What a handler receives: the validated inputs and who is asking."""

    request: web.Request
    ctx: AdminContext
    principal: Principal
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]
    idempotency: tuple[str, str] | None = None  # (Idempotency-Key, fingerprint of the body)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers

    def limit(self, default: int = 100, maximum: int = MAX_LIMIT) -> int:
        value = int(self.query.get("limit", default))
        if not 1 <= value <= maximum:
            raise InvalidRequest(f"limit must be between 1 and {maximum}, got {value}", param="limit")
        return value

    def list_limit(self) -> int:
        """The page size of a config list (PAGE_FIELDS)."""
        return self.limit(maximum=MAX_LIST_LIMIT)


@dataclass(frozen=True)
class Streamed:
    """A JSON answer written as `chunks` come (a body of hundreds of megabytes is never whole in
    memory, and other requests are served between chunks). Everything that may refuse the request
    is checked before: once the first chunk is sent, the status is 200."""

    chunks: AsyncIterator[bytes]


Result = tuple[int, Any] | Any
Handler = Callable[[Call], Awaitable[Result]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # relative to /admin/v1, with {name} parameters
    handler: Handler
    scope: str
    summary: str
    tag: str
    query: Sequence[Field] = ()
    body: Sequence[Field] = ()
    idempotent_create: bool = False  # honours Idempotency-Key
    returns_secret: bool = False
    aliases: tuple[str, ...] = field(default=())  # older unversioned paths served by this route
    reads_db: bool = False  # reads Postgres (not the node's memory): bounded by db_admin_read_timeout

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    @property
    def body_example(self) -> str:
        """The start of a body this route takes, its required fields first: `{"name": ..., ...}`."""
        first = sorted(self.body, key=lambda f: not f.required)[:2]
        more = ", ..." if len(self.body) > len(first) else ""
        return "{" + ", ".join(f'"{f.name}": ...' for f in first) + more + "}"

    @property
    def documented_path(self) -> str:
        """The path as OpenAPI writes it: `{model:.+}` (a parameter that may hold slashes) is `{model}`."""
        return "/".join(p.split(":", 1)[0] + "}" if p.startswith("{") and ":" in p else p
                        for p in self.full_path.split("/"))


def _parse_query(route: Route, request: web.Request) -> dict[str, Any]:
    declared = {f.name: f for f in route.query}
    out: dict[str, Any] = {}
    for name, raw in request.query.items():
        f = declared.get(name)
        if f is None:
            known = ", ".join(sorted(declared))
            raise InvalidRequest(f"unknown query parameter {name!r} (known: {known})" if known else
                                 f"unknown query parameter {name!r}: {request.method} {request.path} takes none; "
                                 "send it without a query string", param=name)
        out[name] = f.parse_query(raw)
    for f in route.query:
        if f.required and f.name not in out:
            raise InvalidRequest(f"missing required query parameter {f.name!r}: {f.description}", param=f.name)
    return out


def _check_body(route: Route, data: dict[str, Any]) -> dict[str, Any]:
    declared = {f.name: f for f in route.body}
    for name in data:
        if name not in declared:
            raise InvalidRequest(f"unknown field {name!r} (known: {', '.join(sorted(declared))})", param=name)
    out: dict[str, Any] = {}
    for f in route.body:
        if f.name in data:
            out[f.name] = f.check(data[f.name], "field")
        elif f.required:
            raise InvalidRequest(f"missing required field {f.name!r}: {f.description}", param=f.name)
    return out


def _caller(request: web.Request, ctx: AdminContext) -> Principal:
    principal = authenticate(ctx, request.headers.get("Authorization"), client_address(
        request.remote, request.headers.get("X-Forwarded-For"), ctx.trusted_proxies))
    # every admin request's row in the request log names its caller, reads included: who listed
    # keys or read usage is audited there (written in batches off the request path), not in the
    # event log, which holds changes
    rec = record_of(request)
    if rec is not None:
        rec.actor = principal.actor
    return principal


def gate(request: web.Request) -> None:
    """Refuse a request for an admin path no route serves (or not with its method) unless it holds
    an admin credential: the same 401 as on any route, so the 404 or 405 that follows tells only an
    admin which paths exist."""
    try:
        _caller(request, request.app[ADMIN])
    except ShieldesError as exc:
        exc.headers.update(API_HEADERS)
        raise


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handle(request)
        except ShieldesError as exc:  # rendered by the app's error middleware, with these headers
            exc.headers.update(API_HEADERS)
            raise

    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[ADMIN]
        rid = request_id(request)
        principal = _caller(request, ctx)
        if not allows(principal.role, route.scope):
            raise Forbidden(f"the {principal.role} role may not {route.summary[0].lower()}{route.summary[1:]} "
                            f"(needs scope {route.scope!r}); use a token of role "
                            f"{roles_granting(route.scope)}")
        query = _parse_query(route, request)
        body: dict[str, Any] = {}
        if route.body:
            if request.can_read_body:
                parsed, _ = await read_json(request, ctx.settings.max_body_bytes, route.body_example)
                body = _check_body(route, parsed)
            else:
                body = _check_body(route, {})
        idem = None
        key = request.headers.get("Idempotency-Key")
        if key is not None and route.idempotent_create:
            if not 1 <= len(key) <= 200:
                raise InvalidRequest("Idempotency-Key must be 1-200 characters")
            idem = (key, hashlib.sha256(route.full_path.encode() + b"\0" + orjson.dumps(
                body, option=orjson.OPT_SORT_KEYS)).hexdigest())
        call = Call(request, ctx, principal, dict(request.match_info), query, body, idem)
        if principal.signed is not None and ctx.oidc is not None and \
                request.headers.get(ACTIVITY_HEADER) != "background":
            renewed = ctx.oidc.renew(principal.signed, time.time())  # the user is active: the idle deadline moves
            if renewed is not None:
                call.headers[RENEWED_HEADER] = renewed
        try:
            if route.reads_db:
                result = await ctx.db_read_wait.run(route.handler(call), f"{route.method} {route.full_path} cannot "
                                                    "read the database right now", advice=SERVING,
                                                    refused=refused_read)
            else:
                result = await route.handler(call)
        except ShieldesError as exc:  # the shared decisions speak of CLI flags: name the fields instead
            if CLI_WORDING not in request.headers:
                exc.message = api_wording(exc.message)
            raise
        status, data = result if isinstance(result, tuple) else (200, result)
        if isinstance(data, dict) and data.get("warnings") and CLI_WORDING not in request.headers:
            data = {**data, "warnings": [api_wording(w) for w in data["warnings"]]}  # (as the refusals)
        if isinstance(data, Streamed):
            return await _stream(request, data, {"Content-Type": "application/json", REQUEST_ID: rid,
                                                 **API_HEADERS, **call.headers})
        # numbers as decimals, never `2e-7` (money: a request's cost, a small budget or price)
        return web.Response(body=plainjson.dumps(data), status=status, headers={
            "Content-Type": "application/json", REQUEST_ID: rid, **API_HEADERS, **call.headers})

    return guarded


async def _stream(request: web.Request, data: Streamed, headers: dict[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    async for chunk in data.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def register(app: web.Application, routes: Sequence[Route]) -> None:
    for route in routes:
        handler = _wrap(route)
        for path in (route.full_path, *route.aliases):
            app.router.add_route(route.method, _empty_names_routed(path), handler)


def _empty_names_routed(path: str) -> str:
    """`path` whose parameters match an empty name too (`/keys/{key}` answers `/keys/` with the
    key's 404, `key_not_found`, not the 404 of a path no route serves, which reads as a wrong URL)."""
    return re.sub(r"\{(\w+)\}", r"{\1:[^/]*}", path).replace(":.+}", ":.*}")


def page(rows: list[dict[str, Any]], cursor: str, call: Call) -> dict[str, Any]:
    """One page of `rows` (already sorted by `cursor`, ascending) after the `after` cursor."""
    after = call.query.get("after")
    start = 0 if after is None else bisect_right(rows, after, key=lambda r: str(r[cursor]))
    limit = call.list_limit()
    data = rows[start:start + limit]
    more = len(rows) - start > limit
    return {"object": "list", "data": data, "has_more": more,
            "next_after": str(data[-1][cursor]) if more and data else None}


async def in_slices(items: Sequence[T], view: Callable[[T], dict[str, Any]], size: int = 500) -> list[dict[str, Any]]:
    """`view` of each item, `size` at a time with the node's other requests served between slices:
    a page of 10,000 keys' or every budget's views is a second of work at a million keys."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        rows += [view(item) for item in items[start:start + size]]
    return rows


def page_of_names(names: Sequence[str], call: Call) -> tuple[Sequence[str], bool]:
    """The names (sorted, ascending) of one page after the `after` cursor, and whether more follow:
    a bisection, so a page costs O(limit + log n) however many names there are."""
    after = call.query.get("after")
    start = 0 if after is None else bisect_right(names, after)
    limit = call.list_limit()
    return names[start:start + limit], len(names) - start > limit


def listing(data: list[dict[str, Any]], more: bool, cursor: str) -> dict[str, Any]:
    """A list answer whose `data` is one page (see page_of_names)."""
    return {"object": "list", "data": data, "has_more": more,
            "next_after": str(data[-1][cursor]) if more and data else None}


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": "string", "nullable": True},
        "code": {"type": "string"}}}},
}


def openapi(routes: Sequence[Route], version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of `routes`."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "tags": [r.tag],
            "operationId": _operation_id(r),
            "x-required-scope": r.scope,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_params(r.path)
            ] + [
                {"name": f.name, "in": "query", "required": f.required, "description": f.description,
                 "schema": {k: v for k, v in f.schema().items() if k != "description"}}
                for f in r.query
            ],
            "responses": {
                "200": {"description": "success" + (" (the secret appears in this response only)"
                                                    if r.returns_secret else ""),
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "error (OpenAI error shape)",
                            "content": {"application/json": {"schema": ERROR_SCHEMA}}},
            },
        }
        if r.idempotent_create:
            op["parameters"].append({"name": "Idempotency-Key", "in": "header", "required": False,
                                     "description": "retry-safe creation: a repeat returns the first result",
                                     "schema": {"type": "string"}})
        if r.body:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {f.name: f.schema() for f in r.body},
                "required": [f.name for f in r.body if f.required],
            }}}}
        paths.setdefault(r.documented_path, {})[r.method.lower()] = op
        for alias in r.aliases:
            paths.setdefault(alias, {})[r.method.lower()] = {**op, "deprecated": True,
                                                             "operationId": op["operationId"] + "_legacy"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "shieldes admin API", "version": version,
                 "description": "Manage and watch a shieldes cluster. Authenticate with "
                                "`Authorization: Bearer <admin token>`."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _operation_id(r: Route) -> str:
    path = r.path.split(":", 1)[0].strip("/")
    words = path.replace("{", "").replace("}", "").replace("-", "_").replace(".", "_").split("/")
    return "_".join([r.method.lower(), *words])


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":", 1)[0] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
