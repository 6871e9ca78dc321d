"""`shieldes usage`: requests, tokens, media units (images, seconds of audio, characters), hosted tool
uses (web searches, file searches, containers) with their part of the cost, and cost per virtual
key, in SQL over the `usage_daily` view (the same numbers before and after compaction, since
rollups feed the view too)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import click

from shieldes.cli.common import cli_context, json_option, query, run_read
from shieldes.cli.oneline import OneLineCommand, handle_errors
from shieldes.cli.output import emit
from shieldes.errors import InvalidRequest, SubjectNotFound
from shieldes.requestlog.filters import refuse_empty
from shieldes.timeparse import parse_day

if TYPE_CHECKING:
    from shieldes.cli.remote import AdminApi

COLUMNS = ("key", "key_id", "requests", "prompt_tokens", "completion_tokens", "images", "audio_seconds", "characters",
           "web_searches", "file_searches", "containers", "tools_usd", "cost_usd")
# what calls are billed in besides tokens: media units, hosted tool uses
UNITS = ("images", "audio_seconds", "characters", "web_searches", "file_searches", "containers")



def _day(text: str | None, what: str) -> date | None:
    return parse_day(text, what) if text is not None else None


@click.command("usage", cls=OneLineCommand)
@click.option("--key", help="only this key (name or id)")
@click.option("--since", metavar="DAY", help="first UTC day counted, e.g. 2026-11-01, or the day this long ago: "
              "2h, 7d")
@click.option("--until", metavar="DAY", help="last UTC day counted (inclusive), or the day this long ago: 1d")
@json_option
@handle_errors
def usage(key: str | None, since: str | None, until: str | None, as_json: bool) -> None:
    """Requests, tokens, media units, hosted tool uses and cost per virtual key (UTC days, inclusive)."""
    refuse_empty("key", key)  # (through the API an empty --key was no filter: every key's usage)
    ctx = cli_context()
    params: dict[str, Any] = {"key": key, "since": _day(since, "--since"), "until": _day(until, "--until")}
    if params["since"] and params["until"] and params["since"] > params["until"]:
        raise InvalidRequest("--since is after --until; swap them")

    api = ctx.remote()
    if api is not None:
        emit(_remote_rows(api, key, since, until), as_json=ctx.as_json, columns=COLUMNS)
        return

    from shieldes.events.queries import KNOWN_KEY_SQL, USAGE_PER_KEY_SQL  # the direct path only: psycopg

    async def fetch() -> list[dict[str, Any]]:
        if key is not None and not await query(KNOWN_KEY_SQL, params):
            raise SubjectNotFound(f"no virtual key named or with id {key!r}; see `shieldes key list`",
                              code="key_not_found")
        return await query(USAGE_PER_KEY_SQL, params)

    rows = run_read(fetch())
    for r in rows:
        r["cost_usd"] = float(r["cost_usd"])  # exact value: cost_nusd (integer nano-USD)
        r["tools_usd"] = float(r["tools_usd"])
    emit(rows, as_json=ctx.as_json, columns=COLUMNS)


def _remote_rows(api: AdminApi, key: str | None, since: str | None, until: str | None) -> list[dict[str, Any]]:
    """Direct mode's rows through the admin API: the usage per key (GET /admin/v1/usage) plus zeros
    for the keys without usage in the window that are not revoked (GET /admin/v1/usage/keys, a page
    at a time: names and ids only). Every role that may read usage may read both."""
    from shieldes.cli.remote import RemoteError

    used = api.get("/usage", group_by="key", key=key, since=since, until=until)["data"]
    # (a node of an earlier release gives no tool columns: zeros)
    rows = {r["key_id"]: {c: r.get(c, 0) for c in (*COLUMNS, "cost_nusd")} for r in used}
    try:
        idle = api.every("/usage/keys", key=key)
    except RemoteError as exc:
        if exc.http_status != 404 or exc.code != "not_found":
            raise
        idle = _config_keys(api, key)  # a node of an earlier release: no such route
    for k in idle:
        rows.setdefault(k["id"], {"key": k["name"], "key_id": k["id"], "requests": 0, "prompt_tokens": 0,
                                  "completion_tokens": 0, **dict.fromkeys(UNITS, 0), "tools_usd": 0.0, "cost_usd": 0.0,
                                  "cost_nusd": 0})
    return sorted(rows.values(), key=lambda r: (r["key"], r["key_id"]))


def _config_keys(api: AdminApi, key: str | None) -> list[dict[str, Any]]:
    """The unrevoked keys from the whole config (GET /admin/v1/config), as a node of an earlier
    release without GET /admin/v1/usage/keys gives them."""
    return [k for k in api.get("/config")["keys"] if not k["revoked"] and (key is None or key in (k["name"], k["id"]))]
