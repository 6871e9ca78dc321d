"""usage units: images, audio_seconds and characters in the usage views and the request log

Media calls are billed in units other than tokens: images at a per-image price, seconds of audio
(whisper-1) and characters of input (tts-1). They are now recorded in their own columns instead of
in prompt_tokens, so the token columns hold tokens only:

- a usage delta (`usage.recorded`, `usage.rolled_up`) carries `images`, `audio_seconds` and
  `characters` when not zero (still version 1: the members are optional, and a delta without
  them, every delta written before this release, reads as zero of each); `usage_deltas` and
  `usage_daily` show them, at the end of the views (a view only grows at its end);
- `request_log_rows` gets the three columns (NULL where the request billed none of that unit),
  shown at the end of `request_log`.

Usage recorded before this release is not rewritten: its tts-1 characters and whisper seconds
stay in prompt_tokens.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_DELTAS = """
    SELECT e.position, e.recorded_at, e.stream, e.type AS source,
           d.key_id, d.team_id, d.provider, d.model,
           to_timestamp(d.hour * 3600) AS hour,
           d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nusd{units}
    FROM events e
    CROSS JOIN LATERAL jsonb_to_recordset(e.data->'deltas') AS d(
        key_id text, team_id text, provider text, model text, hour bigint,
        requests bigint, prompt_tokens bigint, completion_tokens bigint, cost_nusd bigint{unit_types})
    WHERE e.type IN ('usage.recorded', 'usage.rolled_up')
"""
_DELTA_UNITS = (", coalesce(d.images, 0) AS images, coalesce(d.audio_seconds, 0) AS audio_seconds,"
                " coalesce(d.characters, 0) AS characters")
_DELTA_UNIT_TYPES = ", images bigint, audio_seconds bigint, characters bigint"

_DAILY = """
    SELECT coalesce(k.key_name, u.key_id) AS key_name,
           u.key_id,
           (u.hour AT TIME ZONE 'UTC')::date AS day,
           sum(u.requests)::bigint AS requests,
           sum(u.prompt_tokens)::bigint AS prompt_tokens,
           sum(u.completion_tokens)::bigint AS completion_tokens,
           (sum(u.cost_nusd) / 1000000000.0)::numeric(24, 9) AS cost_usd{units}
    FROM usage_deltas u
    LEFT JOIN virtual_keys k ON k.key_id = u.key_id
    GROUP BY 1, 2, 3
"""
_DAILY_UNITS = (", sum(u.images)::bigint AS images, sum(u.audio_seconds)::bigint AS audio_seconds,"
                " sum(u.characters)::bigint AS characters")

_REQUESTS = """
    SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
           model, upstream_model, deployment, attempts, failover_path, status, error_code,
           latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
           reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
           stream, client_ip, user_agent, trace_id, logged_at, error_message{extra}
    FROM request_log_rows
"""


def upgrade() -> None:
    op.execute("ALTER TABLE request_log_rows ADD COLUMN images bigint, ADD COLUMN audio_seconds bigint, "
               "ADD COLUMN characters bigint")
    op.execute("CREATE OR REPLACE VIEW request_log AS"
               + _REQUESTS.format(extra=", images, audio_seconds, characters"))
    op.execute("CREATE OR REPLACE VIEW usage_deltas AS"
               + _DELTAS.format(units=_DELTA_UNITS, unit_types=_DELTA_UNIT_TYPES))
    op.execute("CREATE OR REPLACE VIEW usage_daily AS" + _DAILY.format(units=_DAILY_UNITS))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate them as they were, grants included
    op.execute("DROP VIEW usage_daily")
    op.execute("DROP VIEW usage_deltas")
    op.execute("CREATE VIEW usage_deltas AS" + _DELTAS.format(units="", unit_types=""))
    op.execute("CREATE VIEW usage_daily AS" + _DAILY.format(units=""))
    op.execute("GRANT SELECT ON usage_daily, usage_deltas TO shieldes_audit")
    op.execute("DROP VIEW request_log")
    op.execute("CREATE VIEW request_log AS" + _REQUESTS.format(extra=""))
    op.execute("GRANT SELECT ON request_log TO shieldes_audit")
    op.execute("GRANT SELECT ON request_log TO shieldes_audit_bodies")
    op.execute("ALTER TABLE request_log_rows DROP COLUMN images, DROP COLUMN audio_seconds, DROP COLUMN characters")
