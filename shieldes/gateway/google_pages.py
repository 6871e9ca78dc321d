"""Pages of the Gemini API's model list (GET /v1beta/models): `pageSize` models (default 50; 0 or
unset is the default, above 1000 is 1000, as Google coerces it) after the `pageToken` an earlier
page gave as its `nextPageToken`. A token carries the last name of its page, so a model added or
removed between two calls neither repeats nor skips another."""

from __future__ import annotations

import base64
import binascii

from shieldes.errors import InvalidRequest

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(given: str | None) -> int:
    if given is None or given.strip() in ("", "0"):
        return DEFAULT_PAGE_SIZE
    try:
        size = int(given)
    except ValueError:
        size = -1
    if size < 0:
        raise InvalidRequest(f"query parameter 'pageSize' must be a whole number from 0 to {MAX_PAGE_SIZE}, "
                             f"got {given[:40]!r}")
    return min(size, MAX_PAGE_SIZE)


def _token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _after(token: str) -> str:
    try:
        return base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("query parameter 'pageToken' is not a nextPageToken this list gave; "
                             "list again without it") from None


def google_page(names: list[str], size: str | None, token: str | None) -> tuple[list[str], str | None]:
    """The page of `names` (sorted) the query asks for, and the token of the next page (None:
    this page is the last)."""
    if token:
        after = _after(token)
        names = [n for n in names if n > after]
    limit = page_size(size)
    if len(names) <= limit:
        return names, None
    page = names[:limit]
    return page, _token(page[-1])
