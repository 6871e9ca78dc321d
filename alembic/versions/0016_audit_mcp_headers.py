"""audit_log shows MCP servers' header names, not their values

An MCP server's headers (`mcp_server.added` / `.updated`) hold secret references, `enc:<token>`
or `env:VAR`, as a provider's `secret_ref` does; the view strips `secret_ref` and now shows each
header's value as "redacted", so the audit role reads which headers a server gets, never their
encrypted values. A view only: nothing is rewritten, and no other object changes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_VIEW = """
        SELECT e.position, e.recorded_at,
               coalesce(e.metadata->>'actor', 'unknown') AS actor,
               e.type,
               coalesce(e.data->>'name', k.key_name, tm.team_name, e.data->>'model', e.data->>'subject_id',
                        e.data->>'key_id', e.data->>'id') AS subject,
               {data} AS data,
               e.hash
        FROM events e
        LEFT JOIN virtual_keys k
          ON k.key_id = coalesce(e.data->>'id', e.data->>'key_id', e.data->>'subject_id')
        LEFT JOIN (SELECT t.data->>'id' AS team_id, t.data->>'name' AS team_name FROM events t
                   WHERE t.type = 'team.created') tm
          ON e.data->>'subject_kind' = 'team' AND tm.team_id = e.data->>'subject_id'
        WHERE e.stream = 'config'
"""
_STRIPPED = "e.data - 'key_hash' - 'secret_ref'"
_REDACTED = f"""CASE WHEN e.type LIKE 'mcp_server.%' AND jsonb_typeof(e.data->'headers') = 'object'
                    THEN ({_STRIPPED}) || jsonb_build_object('headers', (
                        SELECT coalesce(jsonb_object_agg(h.key, 'redacted'), '{{}}'::jsonb)
                        FROM jsonb_each(e.data->'headers') h))
                    ELSE {_STRIPPED} END"""


def upgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW audit_log AS" + _VIEW.format(data=_REDACTED))


def downgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW audit_log AS" + _VIEW.format(data=_STRIPPED))
