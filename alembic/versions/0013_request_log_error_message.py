"""request_log.error_message: why a request was refused or failed, in the words the client got

error_code says what kind of refusal (budget_exceeded, upstream_error); the message says which
budget and how much was spent, which upstream at which address failed and how, and what to do.
Added at the end of the view (a view only grows at its end); rows written before it, or by a node
of an earlier release, have NULL.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_VIEW = """
    SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
           model, upstream_model, deployment, attempts, failover_path, status, error_code,
           latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
           reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
           stream, client_ip, user_agent, trace_id, logged_at{extra}
    FROM request_log_rows
"""


def upgrade() -> None:
    op.execute("ALTER TABLE request_log_rows ADD COLUMN error_message text")
    op.execute("CREATE OR REPLACE VIEW request_log AS" + _VIEW.format(extra=", error_message"))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate it as it was, grants included
    op.execute("DROP VIEW request_log")
    op.execute("CREATE VIEW request_log AS" + _VIEW.format(extra=""))
    op.execute("GRANT SELECT ON request_log TO shieldes_audit")
    op.execute("GRANT SELECT ON request_log TO shieldes_audit_bodies")
    op.execute("ALTER TABLE request_log_rows DROP COLUMN error_message")
