"""request_log.cache_write_tokens: the prompt tokens written to the upstream's prompt cache

Cache writes (Anthropic `cache_creation_input_tokens`, Bedrock `cacheWriteInputTokens`) are part of
prompt_tokens and cost their own price, like the cache reads in cached_tokens; with both, a row's
cost can be checked against its counts. Added at the end of the view (a view only grows at its
end); rows written before it, or by a node of an earlier release, have NULL.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_VIEW = """
    SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
           model, upstream_model, deployment, attempts, failover_path, status, error_code,
           latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
           reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
           stream, client_ip, user_agent, trace_id, logged_at, error_message,
           images, audio_seconds, characters{extra}
    FROM request_log_rows
"""


def upgrade() -> None:
    op.execute("ALTER TABLE request_log_rows ADD COLUMN cache_write_tokens bigint")
    op.execute("CREATE OR REPLACE VIEW request_log AS" + _VIEW.format(extra=", cache_write_tokens"))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate it as it was, grants included
    op.execute("DROP VIEW request_log")
    op.execute("CREATE VIEW request_log AS" + _VIEW.format(extra=""))
    op.execute("GRANT SELECT ON request_log TO shieldes_audit")
    op.execute("GRANT SELECT ON request_log TO shieldes_audit_bodies")
    op.execute("ALTER TABLE request_log_rows DROP COLUMN cache_write_tokens")
