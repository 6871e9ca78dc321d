"""request_log.fallback: the fallback that answered

A request may fall back: to an alias's configured fallbacks (`model alias ... --fallback`) or to the
models it names itself in `fallbacks` (as applications moved from LiteLLM and Bifrost send them).
`fallback` is the name, as the request or the alias gave it, whose deployments answered; NULL when
the requested model's own did (and for rows written before it or by a node of an earlier release).
`upstream_model` says which model that was. Added at the end of the view (a view only grows at its
end); a column added to the partitioned table reaches every partition.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_VIEW = """
    SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
           model, upstream_model, deployment, attempts, failover_path, status, error_code,
           latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
           reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
           stream, client_ip, user_agent, trace_id, logged_at, error_message,
           images, audio_seconds, characters, cache_write_tokens, service_tier,
           web_searches, file_searches, containers, actor, tags{extra}
    FROM request_log_rows
"""


def upgrade() -> None:
    op.execute("ALTER TABLE request_log_rows ADD COLUMN fallback text")
    op.execute("CREATE OR REPLACE VIEW request_log AS" + _VIEW.format(extra=", fallback"))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate it as it was, grants included
    op.execute("DROP VIEW request_log")
    op.execute("CREATE VIEW request_log AS" + _VIEW.format(extra=""))
    op.execute("GRANT SELECT ON request_log TO shieldes_audit")
    op.execute("GRANT SELECT ON request_log TO shieldes_audit_bodies")
    op.execute("ALTER TABLE request_log_rows DROP COLUMN fallback")
