"""stored responses of the Responses API: one table partitioned by day of creation

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Not part of the event log: rows hold conversation content, are written in batches by the node
that served the response, and expire by dropping whole daily partitions (created on demand by the
writer, dropped by the purge job once older than the retention).
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE stored_responses (
            id text NOT NULL,
            created_at timestamptz NOT NULL,
            key_id text NOT NULL,
            previous_response_id text,
            model text NOT NULL,
            input jsonb NOT NULL,
            response jsonb NOT NULL,
            PRIMARY KEY (id, created_at)
        ) PARTITION BY RANGE (created_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE stored_responses")
