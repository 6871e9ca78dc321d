"""usage hosted tools: web_searches, file_searches, containers and tools_usd in the usage views

The hosted tool uses billed per use (web searches, file searches, code interpreter containers) were
counted in the request log only; the usage totals carried their cost inside cost_usd. A usage
delta (`usage.recorded`, `usage.rolled_up`) now carries `web_searches`, `file_searches`,
`containers` and `tools_nusd` (the part of `cost_nusd` the uses cost) when not zero (still version
1: optional members, zero in every delta written before this release), and `usage_deltas` and
`usage_daily` show them at the end of the views (a view only grows at its end): web searches per
key and day, and the cost of tools apart from the cost of tokens.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

_DELTAS = """
    SELECT e.position, e.recorded_at, e.stream, e.type AS source,
           d.key_id, d.team_id, d.provider, d.model,
           to_timestamp(d.hour * 3600) AS hour,
           d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nusd,
           coalesce(d.images, 0) AS images, coalesce(d.audio_seconds, 0) AS audio_seconds,
           coalesce(d.characters, 0) AS characters{tools}
    FROM events e
    CROSS JOIN LATERAL jsonb_to_recordset(e.data->'deltas') AS d(
        key_id text, team_id text, provider text, model text, hour bigint,
        requests bigint, prompt_tokens bigint, completion_tokens bigint, cost_nusd bigint,
        images bigint, audio_seconds bigint, characters bigint{tool_types})
    WHERE e.type IN ('usage.recorded', 'usage.rolled_up')
"""
_DELTA_TOOLS = (", coalesce(d.web_searches, 0) AS web_searches, coalesce(d.file_searches, 0) AS file_searches,"
                " coalesce(d.containers, 0) AS containers, coalesce(d.tools_nusd, 0) AS tools_nusd")
_DELTA_TOOL_TYPES = ", web_searches bigint, file_searches bigint, containers bigint, tools_nusd bigint"

_DAILY = """
    SELECT coalesce(k.key_name, u.key_id) AS key_name,
           u.key_id,
           (u.hour AT TIME ZONE 'UTC')::date AS day,
           sum(u.requests)::bigint AS requests,
           sum(u.prompt_tokens)::bigint AS prompt_tokens,
           sum(u.completion_tokens)::bigint AS completion_tokens,
           (sum(u.cost_nusd) / 1000000000.0)::numeric(24, 9) AS cost_usd,
           sum(u.images)::bigint AS images, sum(u.audio_seconds)::bigint AS audio_seconds,
           sum(u.characters)::bigint AS characters{tools}
    FROM usage_deltas u
    LEFT JOIN virtual_keys k ON k.key_id = u.key_id
    GROUP BY 1, 2, 3
"""
_DAILY_TOOLS = (", sum(u.web_searches)::bigint AS web_searches, sum(u.file_searches)::bigint AS file_searches,"
                " sum(u.containers)::bigint AS containers,"
                " (sum(u.tools_nusd) / 1000000000.0)::numeric(24, 9) AS tools_usd")


def upgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW usage_deltas AS"
               + _DELTAS.format(tools=_DELTA_TOOLS, tool_types=_DELTA_TOOL_TYPES))
    op.execute("CREATE OR REPLACE VIEW usage_daily AS" + _DAILY.format(tools=_DAILY_TOOLS))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate them as they were, grants included
    op.execute("DROP VIEW usage_daily")
    op.execute("DROP VIEW usage_deltas")
    op.execute("CREATE VIEW usage_deltas AS" + _DELTAS.format(tools="", tool_types=""))
    op.execute("CREATE VIEW usage_daily AS" + _DAILY.format(tools=""))
    op.execute("GRANT SELECT ON usage_daily, usage_deltas TO shieldes_audit")
