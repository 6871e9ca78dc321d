"""request_log.tags: the client's cost-attribution tags

Applications moved from LiteLLM attribute cost by tags (body `tags`, `metadata.tags`, the
`x-litellm-tags` header). They are never forwarded upstream; they are recorded here (at most 16,
each at most 64 characters) so cost can be summed per tag (examples/request_log.sql). NULL for a
request without tags, rows written before it or by a node of an earlier release. Added at the end
of the view (a view only grows at its end). A column added to the partitioned table reaches every
partition.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_VIEW = """
    SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
           model, upstream_model, deployment, attempts, failover_path, status, error_code,
           latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
           reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
           stream, client_ip, user_agent, trace_id, logged_at, error_message,
           images, audio_seconds, characters, cache_write_tokens, service_tier,
           web_searches, file_searches, containers, actor{extra}
    FROM request_log_rows
"""


def upgrade() -> None:
    op.execute("ALTER TABLE request_log_rows ADD COLUMN tags text[]")
    op.execute("CREATE OR REPLACE VIEW request_log AS" + _VIEW.format(extra=", tags"))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate it as it was, grants included
    op.execute("DROP VIEW request_log")
    op.execute("CREATE VIEW request_log AS" + _VIEW.format(extra=""))
    op.execute("GRANT SELECT ON request_log TO shieldes_audit")
    op.execute("GRANT SELECT ON request_log TO shieldes_audit_bodies")
    op.execute("ALTER TABLE request_log_rows DROP COLUMN tags")
