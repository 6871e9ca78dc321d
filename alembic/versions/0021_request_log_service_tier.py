"""request_log.service_tier: the service tier the answer says served the request

OpenAI's `service_tier` (flex, priority, default, scale), Anthropic's `usage.service_tier`, Vertex's
`trafficType` and Bedrock's `serviceTier`, in OpenAI's words: flex and priority answers cost the
model's multiplier for the tier, so a row's cost is checked against its tier. Added at the end of
the view (a view only grows at its end); rows written before it, by a node of an earlier release,
or whose upstream said nothing, have NULL.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_VIEW = """
    SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
           model, upstream_model, deployment, attempts, failover_path, status, error_code,
           latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
           reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
           stream, client_ip, user_agent, trace_id, logged_at, error_message,
           images, audio_seconds, characters, cache_write_tokens{extra}
    FROM request_log_rows
"""


def upgrade() -> None:
    op.execute("ALTER TABLE request_log_rows ADD COLUMN service_tier text")
    op.execute("CREATE OR REPLACE VIEW request_log AS" + _VIEW.format(extra=", service_tier"))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate it as it was, grants included
    op.execute("DROP VIEW request_log")
    op.execute("CREATE VIEW request_log AS" + _VIEW.format(extra=""))
    op.execute("GRANT SELECT ON request_log TO shieldes_audit")
    op.execute("GRANT SELECT ON request_log TO shieldes_audit_bodies")
    op.execute("ALTER TABLE request_log_rows DROP COLUMN service_tier")
