"""log_head.horizon: the highest position compaction has folded usage up to

A node whose cursor is below it would count rollups of events it had already applied (or miss
raw events folded into rollups below its cursor), so it reloads instead of reading on. Existing
rollups set the starting value.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE log_head ADD COLUMN horizon bigint NOT NULL DEFAULT 0;
        COMMENT ON COLUMN log_head.horizon IS
            'compaction folded raw usage at or below this position; a reader below it must reload';
        UPDATE log_head SET horizon = coalesce(
            (SELECT max((data->>'last_position')::bigint) FROM events WHERE type = 'usage.rolled_up'), 0)
        WHERE id = 1;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE log_head DROP COLUMN horizon")
