"""What a request-log query asks for, without the database driver: the filters, the status forms
they accept and the rows' JSON-ready values. `shieldes logs` through the admin API needs only these,
and a short command must not import psycopg for them; the SQL is store.py's."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shieldes.errors import InvalidRequest, NotFound

_STATUS = re.compile(r"^(?:([1-5])xx|([1-5]\d\d)|(error|ok))$")


@dataclass(frozen=True)
class LogFilter:
    """Filters of a request-log query; every field optional. `status`: 429, 4xx, error (status
    >= 400 or an error code such as client_disconnected) or ok. `before`: keyset cursor
    (started_at, request_id) of the last row of the previous page; `logged_after`: rows written
    after this time (tailing)."""

    key: str | None = None  # key name or id
    model: str | None = None  # requested or upstream model
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    node_id: str | None = None
    route: str | None = None  # a route pattern, a prefix ending in * (/v1/*, /admin/*), or GATEWAY
    error_code: str | None = None  # why: budget_exceeded, rate_limit_exceeded, upstream_error, ...
    tag: str | None = None  # requests carrying this tag (the client's, LiteLLM's `tags`)
    before: tuple[datetime, str] | None = None
    logged_after: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("key", "model", "request_id", "node_id", "error_code", "tag"):
            refuse_empty(name, getattr(self, name))
        # every route the log holds is a path pattern or UNMATCHED: another word would match no
        # row, an empty answer that looks like no traffic
        if self.route is not None and not (self.route in (GATEWAY, UNMATCHED, "*") or self.route.startswith("/")):
            raise InvalidRequest(f"malformed route {self.route!r}: use a route such as /v1/chat/completions, a "
                                 "prefix ending in * (/v1/*, /admin/*), gateway (the clients' requests), unmatched "
                                 "(paths no route serves) or * (every request)")


# The `route` filter's word for the clients' requests: every route but the admin API's, the web
# console's and the probes' (/health, /ready, /metrics), that is the gateway's routes (versioned and
# not) and unmatched paths. `shieldes logs` shows these by default: a console left open polls the
# admin API every 2 s, a load balancer probes /ready, and their rows would push the clients' off
# the newest page.
GATEWAY = "gateway"
# The route of a request for a path no route serves (the path itself is in the `path` column).
UNMATCHED = "unmatched"


def refuse_empty(name: str, value: str | None) -> None:
    """An empty text filter matches no row: an empty answer that reads as "none such"."""
    if value is not None and not value.strip():
        raise InvalidRequest(f"the {name} filter is empty and would match nothing; give a value or leave it out")


def request_not_found(request_id: str, *, filtered: bool = False) -> NotFound:
    """No row has this request id (`filtered`: none that the other filters given keep)."""
    which = " that the other filters keep (drop them to find the id alone)" if filtered else ""
    return NotFound(f"no request with id {request_id!r} in the request log{which}: it may be older than the "
                    "retention (SHIELDES_REQUEST_LOG_RETENTION) or not written yet (rows are written about once a "
                    "second)", code="request_not_found")


def parse_status(status: str) -> tuple[str | None, str | None, str | None]:
    """A status filter's form: (class digit, code, word), one of them set; refused if malformed."""
    m = _STATUS.match(status.strip().lower())
    if m is None:
        raise InvalidRequest(f"malformed status {status!r}: use a code (429), a class (4xx, 5xx), error or ok")
    cls, code, word = m.groups()
    return cls, code, word


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready values: times as ISO 8601 UTC, cost as a number (cost_nusd keeps the exact integer)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, datetime):
            v = v.astimezone(UTC).isoformat()
        elif isinstance(v, Decimal):
            v = float(v)
        out[k] = v
    return out
