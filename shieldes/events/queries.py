"""Read queries over the audit views (`audit_log`, `usage_deltas`, `usage_daily`, `virtual_keys`), shared
by the CLI and the admin API. Read-only; everything user-given is a bound parameter, column choices come
from a fixed set."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, LiteralString

from psycopg import sql
from psycopg.rows import dict_row

from shieldes.errors import InvalidRequest
from shieldes.events.catalog import CONFIG_EVENTS
from shieldes.requestlog.filters import refuse_empty

if TYPE_CHECKING:  # the CLI's direct reads use this module's SQL without a pool
    from psycopg_pool import AsyncConnectionPool

_AUDIT_ROWS = """
    SELECT position, recorded_at, actor, type, subject, data
    FROM audit_log
    WHERE (%(actor)s::text IS NULL OR actor = %(actor)s)
      AND (%(type)s::text IS NULL OR type = %(type)s OR type LIKE %(type_prefix)s)
      AND (%(subject)s::text IS NULL OR subject = %(subject)s OR data->>'id' = %(subject)s
           OR data->>'key_id' = %(subject)s OR data->>'subject_id' = %(subject)s)
      AND (%(since)s::timestamptz IS NULL OR recorded_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR recorded_at <= %(until)s::timestamptz)
      AND (%(before)s::bigint IS NULL OR position < %(before)s::bigint)
"""
AUDIT_SQL = _AUDIT_ROWS + """
    ORDER BY position DESC
    LIMIT %(limit)s
"""
# With a subject, few rows match: only the events of the keys and teams with that id or name, and
# the shared config (every other event's subject is the id it names), found in `audit_subjects`
# (migration 0020, over config_index) before any row of `audit_log` is built. The subject column
# is a name looked up per event: matched over every row it was a lookup per config event (9.5 s at
# a million keys). The rows are still matched by the full condition.
_SUBJECT_ROWS = _AUDIT_ROWS + """
      AND position = ANY(ARRAY(
          SELECT s.position FROM audit_subjects s WHERE s.shared
          UNION ALL SELECT s.position FROM audit_subjects s WHERE s.subject_id = %(subject)s
          UNION ALL SELECT s.position FROM audit_subjects s WHERE s.subject_id IN (
              SELECT n.subject_id FROM audit_subjects n
              WHERE n.name = %(subject)s AND n.type IN ('virtual_key.created', 'team.created'))))
"""
# Matched in full first, then ordered and cut: under a LIMIT the planner once joined each config
# event to every key in a nested loop, hoping to stop early.
AUDIT_SUBJECT_SQL = "WITH matched AS MATERIALIZED (" + _SUBJECT_ROWS + """)
    SELECT * FROM matched ORDER BY position DESC LIMIT %(limit)s
"""


def audit_sql(params: dict[str, Any]) -> str:
    """The audit query for `audit_params(...)`: AUDIT_SUBJECT_SQL when a subject is given."""
    return AUDIT_SUBJECT_SQL if params.get("subject") is not None else AUDIT_SQL


def like_prefix(text: str) -> str:
    """`virtual_key` matches `virtual_key.*`: escape LIKE's wildcards in user text."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"


def check_audit_type(type_: str) -> str:
    """A config event type or family the audit log can hold: a misspelt one matches no row, and an
    empty answer would read as "no such change was ever made"."""
    types = sorted(c.TYPE for c in CONFIG_EVENTS)
    families = sorted({t.split(".")[0] for t in types})
    if type_ in types or type_ in families:
        return type_
    close = difflib.get_close_matches(type_, types + families, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InvalidRequest(f"unknown event type {type_[:80]!r}: {hint}use a family ({', '.join(families)}) or one of "
                         "its types, e.g. virtual_key.revoked (`shieldes audit log` shows every type)")


def audit_params(*, actor: str | None = None, type_: str | None = None, subject: str | None = None,
                 since: datetime | None = None, until: datetime | None = None, before: int | None = None,
                 limit: int = 100) -> dict[str, Any]:
    if type_ is not None:  # '' too: it matches no type, and an empty answer reads as "never changed"
        check_audit_type(type_)
    refuse_empty("actor", actor)
    refuse_empty("subject", subject)
    return {"actor": actor, "type": type_, "type_prefix": like_prefix(type_) if type_ else None,
            "subject": subject, "since": since, "until": until, "before": before, "limit": limit}


# `shieldes usage` in direct mode: per virtual key over UTC days. Keys without usage in the window
# show as zeros, except revoked ones (they only add noise).
USAGE_PER_KEY_SQL = """
    WITH u AS (
        SELECT key_id,
               sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens,
               sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd,
               sum(images) AS images, sum(audio_seconds) AS audio_seconds, sum(characters) AS characters,
               sum(web_searches) AS web_searches, sum(file_searches) AS file_searches,
               sum(containers) AS containers, sum(tools_usd) AS tools_usd
        FROM usage_daily
        WHERE (%(since)s::date IS NULL OR day >= %(since)s::date)
          AND (%(until)s::date IS NULL OR day <= %(until)s::date)
        GROUP BY key_id
    )
    SELECT coalesce(k.key_name, u.key_id) AS key,
           coalesce(k.key_id, u.key_id) AS key_id,
           coalesce(u.requests, 0)::bigint AS requests,
           coalesce(u.prompt_tokens, 0)::bigint AS prompt_tokens,
           coalesce(u.completion_tokens, 0)::bigint AS completion_tokens,
           coalesce(u.images, 0)::bigint AS images,
           coalesce(u.audio_seconds, 0)::bigint AS audio_seconds,
           coalesce(u.characters, 0)::bigint AS characters,
           coalesce(u.web_searches, 0)::bigint AS web_searches,
           coalesce(u.file_searches, 0)::bigint AS file_searches,
           coalesce(u.containers, 0)::bigint AS containers,
           coalesce(u.tools_usd, 0)::numeric(24, 9) AS tools_usd,
           coalesce(u.cost_usd, 0)::numeric(24, 9) AS cost_usd,
           (coalesce(u.cost_usd, 0) * 1000000000)::bigint AS cost_nusd
    FROM virtual_keys k
    FULL OUTER JOIN u ON u.key_id = k.key_id
    WHERE (u.key_id IS NOT NULL OR NOT k.revoked)
      AND (%(key)s::text IS NULL OR k.key_name = %(key)s OR coalesce(k.key_id, u.key_id) = %(key)s)
    ORDER BY 1, 2
"""
KNOWN_KEY_SQL = "SELECT 1 AS one FROM virtual_keys WHERE key_name = %(key)s OR key_id = %(key)s LIMIT 1"

# `shieldes budget show` in direct mode: a key's or a team's spend since its period's start.
_SPENT_KEY_SQL = """
    SELECT coalesce(sum(cost_nusd), 0)::bigint AS nusd FROM usage_deltas WHERE key_id = %s AND hour >= %s
"""
_SPENT_TEAM_SQL = """
    SELECT coalesce(sum(cost_nusd), 0)::bigint AS nusd FROM usage_deltas WHERE team_id = %s AND hour >= %s
"""


def spent_since_sql(subject_kind: str) -> LiteralString:
    """The spend query for a budget's subject: `key` or `team`."""
    return _SPENT_TEAM_SQL if subject_kind == "team" else _SPENT_KEY_SQL


# What usage can be grouped by: fixed SQL expressions, never user text.
USAGE_GROUPS = {
    "day": "(u.hour AT TIME ZONE 'UTC')::date",
    "hour": "u.hour",
    "key": "u.key_id",
    "team": "u.team_id",
    "model": "u.model",
    "provider": "u.provider",
}


async def usage_grouped(
    pool: AsyncConnectionPool[Any], group_by: Sequence[str], *, since: date | None, until: date | None,
    key_ids: Sequence[str] | None = None, team_ids: Sequence[str] | None = None, model: str | None = None,
    provider: str | None = None, since_time: datetime | None = None,
) -> list[dict[str, Any]]:
    """Requests, tokens and cost from `usage_deltas` (raw flushes and rollups alike) summed per
    `group_by` columns, within UTC days [since, until]."""
    cols = [sql.SQL(USAGE_GROUPS[g] + " AS {}").format(sql.Identifier(g)) for g in group_by]
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, Any] = {}
    if since is not None:
        where.append(sql.SQL("u.hour >= %(since)s"))
        params["since"] = datetime(since.year, since.month, since.day).isoformat() + "+00:00"
    if until is not None:
        end = until + timedelta(days=1)
        where.append(sql.SQL("u.hour < %(until)s"))
        params["until"] = datetime(end.year, end.month, end.day).isoformat() + "+00:00"
    if since_time is not None:
        where.append(sql.SQL("u.hour >= %(since_time)s"))
        params["since_time"] = since_time
    for name, values in (("key_ids", key_ids), ("team_ids", team_ids)):
        if values is not None:
            where.append(sql.SQL("u.{} = ANY(%({})s)").format(sql.Identifier(name[:-1]), sql.SQL(name)))
            params[name] = list(values)
    for name, value in (("model", model), ("provider", provider)):
        if value is not None:
            where.append(sql.SQL("u.{} = %({})s").format(sql.Identifier(name), sql.SQL(name)))
            params[name] = value
    select = sql.SQL(", ").join([*cols, sql.SQL(
        "sum(u.requests)::bigint AS requests, sum(u.prompt_tokens)::bigint AS prompt_tokens, "
        "sum(u.completion_tokens)::bigint AS completion_tokens, sum(u.images)::bigint AS images, "
        "sum(u.audio_seconds)::bigint AS audio_seconds, sum(u.characters)::bigint AS characters, "
        "sum(u.web_searches)::bigint AS web_searches, sum(u.file_searches)::bigint AS file_searches, "
        "sum(u.containers)::bigint AS containers, sum(u.tools_nusd)::bigint AS tools_nusd, "
        "sum(u.cost_nusd)::bigint AS cost_nusd")])
    query = sql.SQL("SELECT {} FROM usage_deltas u WHERE {}").format(select, sql.SQL(" AND ").join(where))
    if group_by:
        positions = sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(len(group_by)))
        query = sql.SQL("{} GROUP BY {} ORDER BY {}").format(query, positions, positions)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return list(await cur.fetchall())


async def audit_page(pool: AsyncConnectionPool[Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(audit_sql(params), params)
        return list(await cur.fetchall())
