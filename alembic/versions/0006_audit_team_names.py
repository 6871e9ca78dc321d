"""audit_log names teams: budget events about a team show the team's name as their subject

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_KEEP = """
        SELECT e.position, e.recorded_at,
               coalesce(e.metadata->>'actor', 'unknown') AS actor,
               e.type,
               coalesce(e.data->>'name', k.key_name, {team} e.data->>'model', e.data->>'subject_id',
                        e.data->>'key_id', e.data->>'id') AS subject,
               e.data - 'key_hash' - 'secret_ref' AS data,
               e.hash
        FROM events e
        LEFT JOIN virtual_keys k
          ON k.key_id = coalesce(e.data->>'id', e.data->>'key_id', e.data->>'subject_id')
        {join}
        WHERE e.stream = 'config'
"""

_TEAMS = """
        LEFT JOIN (SELECT t.data->>'id' AS team_id, t.data->>'name' AS team_name FROM events t
                   WHERE t.type = 'team.created') tm
          ON e.data->>'subject_kind' = 'team' AND tm.team_id = e.data->>'subject_id'
"""


def upgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW audit_log AS" + _KEEP.format(team="tm.team_name,", join=_TEAMS))


def downgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW audit_log AS" + _KEEP.format(team="", join=""))
