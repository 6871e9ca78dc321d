"""The admin commands through a node's admin API (`SHIELDES_ADMIN_URL` or `shieldes --admin-url URL`),
with `Authorization: Bearer $SHIELDES_ADMIN_TOKEN`.

Standard library only (`http.client`, `json`): a remote command loads no database driver, no pool,
no HTTP framework, no pydantic and no node, so it starts in about the time the interpreter and click
take. An answer of the API becomes the same one `error:` line the direct mode prints; what the API
words for an admin (`see GET /admin/v1/keys`) is reworded for the CLI where the direct mode says it
differently.
"""

from __future__ import annotations

import http.client
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from shieldes.errors import ShieldesError

PREFIX = "/admin/v1"
TIMEOUT_S = 30.0
# Beyond the node's bound on an admin read's wait for Postgres: its 503 saying what to do arrives
# before the CLI gives up on the node.
READ_MARGIN_S = 10.0
LIST_PAGE = 10_000  # the admin API's largest page of a config list (gateway/admin/api.py MAX_LIST_LIMIT)
OLD_LIST_PAGE = 1000  # ... before that was raised
UNSET_HINT = "unset SHIELDES_ADMIN_URL (and drop --admin-url) to write to Postgres directly"

# What each role may do, for a refusal that names the roles that would be allowed (roles.py holds
# the same grants; it is not imported so that a refusal costs no import).
_ROLES_FOR_SCOPE = {"keys:write": "operator or admin", "admin": "admin", "read": "viewer, operator or admin",
                    "audit": "auditor, viewer, operator or admin", "usage": "auditor, viewer, operator or admin"}
_SCOPE = re.compile(r"needs scope '([^']+)'")


class RemoteError(ShieldesError):
    """The admin API refused a request, or could not be asked."""

    status = 502
    code = "admin_api_error"

    def __init__(self, message: str, *, status: int = 0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.http_status = status


def answer_wait(admin_read_timeout: float) -> float:
    """Seconds the CLI waits for an answer, given SHIELDES_DB_ADMIN_READ_TIMEOUT."""
    return max(TIMEOUT_S, admin_read_timeout + READ_MARGIN_S)


def segment(value: str) -> str:
    """One path segment: a key or team name may hold `/`, `:` or `@`."""
    return quote(value, safe="")


@dataclass(frozen=True)
class AdminApi:
    """One admin API endpoint: the node's base URL (a path prefix of a proxy in front is kept) and
    the bearer token."""

    url: str
    scheme: str
    host: str
    port: int | None
    base_path: str
    token: str | None
    timeout: float = TIMEOUT_S

    @classmethod
    def from_url(cls, url: str, token: str | None, timeout: float = TIMEOUT_S) -> AdminApi:
        try:
            parts = urlsplit(url.strip())
        except ValueError as exc:  # `http://[::1`: an IPv6 host without its closing bracket
            raise RemoteError(f"SHIELDES_ADMIN_URL {url!r} is not a URL ({exc}); set it like http://gateway:8080 "
                              "(an IPv6 address in brackets: http://[::1]:8080)", code="invalid_admin_url") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"SHIELDES_ADMIN_URL {url!r} is not an http(s) URL of a node; set it like "
                              f"http://gateway:8080 or {UNSET_HINT}", code="invalid_admin_url")
        try:
            port = parts.port
        except ValueError:
            raise RemoteError(f"SHIELDES_ADMIN_URL {url!r} has a malformed port; set it like http://gateway:8080",
                              code="invalid_admin_url") from None
        return cls(url.strip().rstrip("/"), parts.scheme, parts.hostname, port, parts.path.rstrip("/"),
                   token or None, timeout)

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query=query)

    def every(self, path: str, *, most: int | None = None, kept: Callable[[dict[str, Any]], bool] | None = None,
              **query: Any) -> list[dict[str, Any]]:
        """A whole list, read page by page (a page holds at most LIST_PAGE items), in the API's order;
        only the items `kept` passes, and no more pages once `most` of them are read."""
        return [item for rows in self.pages(path, most=most, kept=kept, **query) for item in rows]

    def pages(self, path: str, *, most: int | None = None, kept: Callable[[dict[str, Any]], bool] | None = None,
              **query: Any) -> Iterator[list[dict[str, Any]]]:
        """`every`'s items a page at a time, each page as it comes (a long list is printed while read);
        the next page is asked for before this one is handed on, so the node builds it while the
        caller prints (a million keys: the node's work and the printing overlap, not add up)."""
        from concurrent.futures import ThreadPoolExecutor

        limit = LIST_PAGE

        def fetch(after: str | None) -> Any:
            nonlocal limit
            while True:
                try:
                    return self.get(path, limit=limit, after=after, **query)
                except RemoteError as exc:  # a node of a release whose pages hold at most 1000
                    if limit == OLD_LIST_PAGE or exc.http_status != 400 or "limit must be between" not in exc.message:
                        raise
                    limit = OLD_LIST_PAGE

        left = most
        with ThreadPoolExecutor(1) as ahead:  # one request in flight at a time, on the one connection
            got = fetch(None)
            while True:
                rows = got["data"] if kept is None else [item for item in got["data"] if kept(item)]
                if left is not None:
                    rows, left = rows[:left], left - min(left, len(rows))
                following = ahead.submit(fetch, got["next_after"]) if left != 0 and got.get("has_more") else None
                yield rows
                if following is None:
                    return
                got = following.result()

    def call(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
             create: bool = False, not_found: str | None = None) -> Any:
        """Send one request and return the decoded answer; an error answer raises RemoteError with
        the one line to print. `create`: send an Idempotency-Key and retry once with it when the
        connection broke after the request may have been sent (the node answers a retry with the
        first result and appends nothing). `not_found`: the message for a 404 of the thing named
        in the path."""
        if self.token is None:
            raise RemoteError(f"SHIELDES_ADMIN_TOKEN is not set: the admin API at {self.url} needs a token; set it "
                              f"to the nodes' SHIELDES_ADMIN_TOKEN or a token from `shieldes admin-token create`, "
                              f"or {UNSET_HINT}", code="invalid_admin_token")
        target = self.base_path + PREFIX + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
        # Shieldes-Wording: refusals in the CLI's words (flags, commands), as in direct mode
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                   "User-Agent": "shieldes-cli", "Shieldes-Wording": "cli"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        retries = 0
        if create or method == "GET":
            retries = 1
        if create:
            headers["Idempotency-Key"] = os.urandom(16).hex()
        while True:
            try:
                status, raw = self._send(method, target, payload, headers)
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                if retries == 0:
                    raise self._unreachable(exc) from None
                retries -= 1
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from None
        return self._answer(status, raw, not_found)

    def _send(self, method: str, target: str, payload: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            import ssl  # only for https: its import is the largest part of a remote command's

            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _unreachable(self, exc: BaseException) -> RemoteError:
        reason = str(exc).strip() or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {self.timeout:g} s"
        advice = "start a node or unset SHIELDES_ADMIN_URL"
        if self.scheme == "https" and "WRONG_VERSION_NUMBER" in reason:  # TLS spoken to a plain HTTP port
            advice = (f"the node answers plain HTTP there: set SHIELDES_ADMIN_URL to "
                      f"{'http' + self.url[len('https'):]}, or serve HTTPS on the node")
        return RemoteError(f"cannot reach the admin API at {self.url} ({reason}); {advice}",
                           code="admin_api_unreachable")

    def _answer(self, status: int, raw: bytes, not_found: str | None) -> Any:
        try:
            data = orjson.loads(raw) if raw else None  # a list of ten thousand rows: ~3x faster than json's
        except ValueError:
            data = None
        if 200 <= status < 300 and data is not None:
            return data
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            raise RemoteError(f"{self.url} answered HTTP {status} without a shieldes admin API answer; check that "
                              f"SHIELDES_ADMIN_URL points at a shieldes node (its HTTP port), or {UNSET_HINT}",
                              status=status)
        message, code = error["message"], error.get("code")
        raise RemoteError(error_line(self.url, status, code, message, not_found), status=status, code=code)


def error_line(url: str, status: int, code: str | None, message: str, not_found: str | None = None) -> str:
    """The one line a refusal of the admin API prints: the API's own words where the direct mode
    would say the same, and for tokens and roles which token or role is needed."""
    if status == 401:
        return (f"the admin API at {url} refused SHIELDES_ADMIN_TOKEN ({message.rstrip('.')}); set it to the nodes' "
                "SHIELDES_ADMIN_TOKEN or to an active token from `shieldes admin-token create`")
    if status == 403 and code == "insufficient_role":
        scope = _SCOPE.search(message)
        roles = _ROLES_FOR_SCOPE.get(scope.group(1)) if scope else None
        need = f"a token of role {roles}" if roles else "a token with a role that grants it"
        return f"{message.split(';')[0]}; set SHIELDES_ADMIN_TOKEN to {need}"
    if status == 404 and code == "admin_disabled":
        return (f"the admin API at {url} is disabled (the node has no admin token); set SHIELDES_ADMIN_TOKEN on "
                f"the nodes, or {UNSET_HINT}")
    if status == 404 and not_found is not None and code != "not_found":
        return not_found
    if status == 404 and code == "not_found":  # no such route: most often a URL with an API path in it
        call = message.split(";")[0].removeprefix("no such endpoint: ")
        return (f"{url} serves no admin API route for {call}; set SHIELDES_ADMIN_URL to the node's address "
                "without a path (e.g. http://gateway:8080), or to the path prefix a proxy serves it under (a "
                "node of an older release may also lack this route)")
    if status >= 500:
        return f"the admin API at {url} failed (HTTP {status}): {message}"
    return message
