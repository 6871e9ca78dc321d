"""cluster membership log (joins, leaves, nodes declared dead, leader elections) and its audit view

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Append-only record of membership changes, written by the nodes themselves. Not part of
        -- the event log: nodes never replay it, and it is never compacted.
        CREATE TABLE cluster_membership_log (
            id           bigserial   PRIMARY KEY,
            recorded_at  timestamptz NOT NULL DEFAULT now(),
            event        text        NOT NULL
                         CHECK (event IN ('joined', 'left', 'declared_dead', 'leader_elected', 'leader_resigned')),
            node_id      text        NOT NULL,
            boot_epoch   bigint,
            leader_epoch bigint,
            observed_by  text        NOT NULL,
            details      jsonb       NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE INDEX cluster_membership_log_time ON cluster_membership_log (recorded_at);
        -- A node's boot is declared dead once, whichever peer notices first.
        CREATE UNIQUE INDEX cluster_membership_log_dead_once ON cluster_membership_log (node_id, boot_epoch)
            WHERE event = 'declared_dead';

        CREATE VIEW cluster_membership AS
        SELECT id, recorded_at, event, node_id, boot_epoch, leader_epoch, observed_by, details
        FROM cluster_membership_log;
        GRANT SELECT ON cluster_membership TO shieldes_audit;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        REVOKE ALL ON cluster_membership FROM shieldes_audit;
        DROP VIEW cluster_membership;
        DROP TABLE cluster_membership_log;
        """
    )
