"""The CLI's remote mode reads a whole list in pages of 10,000, and in pages of 1000 from a node of
an earlier release (which refuses a larger page with its 400 `limit must be between 1 and 1000`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest

from shieldes.cli.remote import AdminApi, RemoteError
from tests.loopback_http import served

NAMES = [f"team-{i:05d}" for i in range(2500)]


@contextmanager
def node(max_limit: int, asked: list[int]) -> Iterator[str]:
    """A stand-in for a node's `GET /admin/v1/teams`: pages of at most `max_limit` by name cursor."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            limit = int(q["limit"])
            asked.append(limit)
            if limit > max_limit:
                status, body = 400, {"error": {"message": f"limit must be between 1 and {max_limit}, got {limit}",
                                               "type": "invalid_request_error", "code": "invalid_request"}}
            else:
                rest = [n for n in NAMES if n > q.get("after", "")]
                data, more = rest[:limit], len(rest) > limit
                status, body = 200, {"object": "list", "data": [{"name": n} for n in data], "has_more": more,
                                     "next_after": data[-1] if more else None}
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    with served(Handler) as url:
        yield url


@pytest.mark.parametrize(("max_limit", "pages"), [(10_000, [10_000]), (1000, [10_000, 1000, 1000, 1000])])
def test_every_reads_the_whole_list_in_the_largest_pages_the_node_takes(max_limit: int, pages: list[int]) -> None:
    asked: list[int] = []
    with node(max_limit, asked) as url:
        rows = AdminApi.from_url(url, "token").every("/teams")
    assert [r["name"] for r in rows] == NAMES
    assert asked == pages


def test_a_refusal_of_pages_of_1000_too_is_reported() -> None:
    asked: list[int] = []
    with node(10, asked) as url, pytest.raises(RemoteError, match="between 1 and 10, got 1000"):
        AdminApi.from_url(url, "token").every("/teams")
    assert asked == [10_000, 1000]
