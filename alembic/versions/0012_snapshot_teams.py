"""snapshots.teams: each snapshot's teams and their key counts, apart from the whole state

`shieldes team list` and `budget show --team` need the teams and how many active keys each has,
not the keys. The whole state at a million keys is ~36 MB compressed (0.3 s to fetch, 1.5 s to
decode); this column holds the teams part alone (sealed like the state, checksum in
teams_checksum), so a teams-only read fetches a few hundred kilobytes and continues from there
with the config events after the snapshot. NULL in snapshots written before this revision (or by
a release without it): such a reader then loads the whole config as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE snapshots ADD COLUMN teams bytea, ADD COLUMN teams_checksum text")


def downgrade() -> None:
    op.execute("ALTER TABLE snapshots DROP COLUMN teams, DROP COLUMN teams_checksum")
