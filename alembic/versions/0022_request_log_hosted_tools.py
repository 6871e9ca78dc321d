"""request_log.web_searches, file_searches, containers: the hosted tool uses a request was billed for

Web searches (Claude's `usage.server_tool_use.web_search_requests`, OpenAI Responses
`web_search_call` items), file searches (`file_search_call` items) and code interpreter containers
(the containers of `code_interpreter_call` items) cost the model's per-use prices on top of its
tokens; with the counts a row's cost is checked against them. Added at the end of the view (a view
only grows at its end); NULL where the request used none, and in rows written before it or by a
node of an earlier release.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_VIEW = """
    SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
           model, upstream_model, deployment, attempts, failover_path, status, error_code,
           latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
           reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
           stream, client_ip, user_agent, trace_id, logged_at, error_message,
           images, audio_seconds, characters, cache_write_tokens, service_tier{extra}
    FROM request_log_rows
"""
_COLUMNS = ("web_searches", "file_searches", "containers")


def upgrade() -> None:
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE request_log_rows ADD COLUMN {column} bigint")
    op.execute("CREATE OR REPLACE VIEW request_log AS" + _VIEW.format(extra=", " + ", ".join(_COLUMNS)))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate it as it was, grants included
    op.execute("DROP VIEW request_log")
    op.execute("CREATE VIEW request_log AS" + _VIEW.format(extra=""))
    op.execute("GRANT SELECT ON request_log TO shieldes_audit")
    op.execute("GRANT SELECT ON request_log TO shieldes_audit_bodies")
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE request_log_rows DROP COLUMN {column}")
