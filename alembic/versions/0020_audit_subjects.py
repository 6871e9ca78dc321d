"""audit_subjects: which config events are about which key or team, for the audit's subject filter

`audit log --subject` (and the admin API's `audit?subject=`) matched the subject over every row of
`audit_log`, whose subject column is a lookup in `config_index` per config event: 1.36 million
lookups at a million keys (9-17 s). The filter now starts from the few positions that can match:
the events of the keys and teams with that id or name, and the shared config (providers, pricing,
...: a handful), found through this view of `config_index` (indexed by subject and by name; the
key hashes it also holds are left out). Readable by shieldes_audit, as audit_log is.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW audit_subjects AS
            SELECT position, type, shared, subject AS subject_id, name FROM config_index;
        COMMENT ON VIEW audit_subjects IS
            'per config event: its key or team id (subject_id), and the name a key or team was created with';
        GRANT SELECT ON audit_subjects TO shieldes_audit;
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW audit_subjects")
