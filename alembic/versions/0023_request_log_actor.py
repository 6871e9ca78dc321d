"""request_log.actor: who made an admin API request (reads included)

The admin API's and the console's requests were rows of the request log without their caller, so
an auditor could not tell who listed keys or read usage. `actor` names the principal as audit_log
does for changes (`bootstrap-token`, `token:NAME`, `oidc:USER`); NULL for the model API's requests
(their key is `key_id`/`key_name`), refused sign-ins, and rows written before it or by a node of an
earlier release. Added at the end of the view (a view only grows at its end).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_VIEW = """
    SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
           model, upstream_model, deployment, attempts, failover_path, status, error_code,
           latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
           reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
           stream, client_ip, user_agent, trace_id, logged_at, error_message,
           images, audio_seconds, characters, cache_write_tokens, service_tier,
           web_searches, file_searches, containers{extra}
    FROM request_log_rows
"""


def upgrade() -> None:
    op.execute("ALTER TABLE request_log_rows ADD COLUMN actor text")
    op.execute("CREATE OR REPLACE VIEW request_log AS" + _VIEW.format(extra=", actor"))


def downgrade() -> None:
    # a view cannot drop a column in place: recreate it as it was, grants included
    op.execute("DROP VIEW request_log")
    op.execute("CREATE VIEW request_log AS" + _VIEW.format(extra=""))
    op.execute("GRANT SELECT ON request_log TO shieldes_audit")
    op.execute("GRANT SELECT ON request_log TO shieldes_audit_bodies")
    op.execute("ALTER TABLE request_log_rows DROP COLUMN actor")
