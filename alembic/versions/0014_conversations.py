"""conversations of the Conversations API: one row per conversation, its items in order

Like stored_responses, not part of the event log: rows hold conversation content and are scoped to
the key that created the conversation. Items are numbered by an identity column (their order in the
conversation) and deleted with their conversation. Kept until deleted (no retention purge).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE conversations (
            id text PRIMARY KEY,
            created_at timestamptz NOT NULL,
            key_id text NOT NULL,
            metadata jsonb NOT NULL
        );
        CREATE TABLE conversation_items (
            conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            id text NOT NULL,
            created_at timestamptz NOT NULL,
            item jsonb NOT NULL,
            PRIMARY KEY (conversation_id, seq),
            UNIQUE (conversation_id, id)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE conversation_items")
    op.execute("DROP TABLE conversations")
