"""background responses: who runs them, their events, and cancel requests

A response created with `background: true` is a row of stored_responses from the moment it is
queued. Its owner (the node id and boot epoch running it) lets any node tell a run whose node died
(the boot is no longer alive in cluster_nodes); `events` holds its stream events in order (index ==
sequence_number) for replay with `starting_after`; `cancel_requested` is set by a node that was
asked to cancel it and read by the owner. Nullable columns without defaults: adding them rewrites
no partition, and nodes of the previous release neither read nor write them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE stored_responses
            ADD COLUMN background_node text,
            ADD COLUMN background_epoch bigint,
            ADD COLUMN events jsonb,
            ADD COLUMN cancel_requested boolean;
        """
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE stored_responses DROP COLUMN background_node, DROP COLUMN background_epoch, "
        "DROP COLUMN events, DROP COLUMN cancel_requested"
    )
