"""audit_log finds a key's or team's name through config_index, not the virtual_keys view

The view named each config event's subject by joining it to `virtual_keys` (a scan of every
`virtual_key.created` event): under a page's LIMIT the planner joins in a nested loop, so a page of
the audit log read about a million events per row at a million keys (past the 30 s read bound).
The name is now one lookup in `config_index` (indexed by subject, kept by the events' triggers):
a page costs its own rows. The same columns, the same subjects.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_DATA = """CASE WHEN e.type LIKE 'mcp_server.%' AND jsonb_typeof(e.data->'headers') = 'object'
                    THEN (e.data - 'key_hash' - 'secret_ref') || jsonb_build_object('headers', (
                        SELECT coalesce(jsonb_object_agg(h.key, 'redacted'), '{}'::jsonb)
                        FROM jsonb_each(e.data->'headers') h))
                    ELSE e.data - 'key_hash' - 'secret_ref' END"""

# (a key's and a team's ids differ in their prefix: one lookup serves both, the team's only for
# the events that name a team as their subject, as the join of 0006 did)
_VIEW = f"""
        SELECT e.position, e.recorded_at,
               coalesce(e.metadata->>'actor', 'unknown') AS actor,
               e.type,
               coalesce(e.data->>'name', named.name, e.data->>'model', e.data->>'subject_id',
                        e.data->>'key_id', e.data->>'id') AS subject,
               {_DATA} AS data,
               e.hash
        FROM events e
        LEFT JOIN LATERAL (
            SELECT c.name FROM config_index c
            WHERE c.subject = coalesce(e.data->>'id', e.data->>'key_id', e.data->>'subject_id')
              AND (c.type = 'virtual_key.created'
                   OR (c.type = 'team.created' AND e.data->>'subject_kind' = 'team'))
            ORDER BY c.position
            LIMIT 1
        ) named ON true
        WHERE e.stream = 'config'
"""

_BEFORE = f"""
        SELECT e.position, e.recorded_at,
               coalesce(e.metadata->>'actor', 'unknown') AS actor,
               e.type,
               coalesce(e.data->>'name', k.key_name, tm.team_name, e.data->>'model', e.data->>'subject_id',
                        e.data->>'key_id', e.data->>'id') AS subject,
               {_DATA} AS data,
               e.hash
        FROM events e
        LEFT JOIN virtual_keys k
          ON k.key_id = coalesce(e.data->>'id', e.data->>'key_id', e.data->>'subject_id')
        LEFT JOIN (SELECT t.data->>'id' AS team_id, t.data->>'name' AS team_name FROM events t
                   WHERE t.type = 'team.created') tm
          ON e.data->>'subject_kind' = 'team' AND tm.team_id = e.data->>'subject_id'
        WHERE e.stream = 'config'
"""


def upgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW audit_log AS" + _VIEW)


def downgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW audit_log AS" + _BEFORE)
