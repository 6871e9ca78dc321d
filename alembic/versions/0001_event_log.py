"""event log, log head, snapshots, cluster membership and leader epoch

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            position    bigint      PRIMARY KEY,
            stream      text        NOT NULL,
            type        text        NOT NULL,
            version     integer     NOT NULL,
            data        jsonb       NOT NULL,
            metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            seq         bigint,
            prev_hash   text,
            hash        text
        );
        COMMENT ON TABLE events IS 'shieldes event log: append-only, positions are commit-ordered';
        CREATE INDEX events_stream_position ON events (stream, position);
        CREATE INDEX events_type_position ON events (type, position);
        CREATE UNIQUE INDEX events_stream_seq ON events (stream, seq) WHERE seq IS NOT NULL;

        -- One row, updated under the append lock: the head position and the tip of the config hash chain.
        CREATE TABLE log_head (
            id              smallint PRIMARY KEY CHECK (id = 1),
            position        bigint   NOT NULL,
            config_position bigint   NOT NULL,
            config_hash     text     NOT NULL
        );
        INSERT INTO log_head VALUES (1, 0, 0, repeat('0', 64));

        CREATE TABLE snapshots (
            id             bigserial   PRIMARY KEY,
            position       bigint      NOT NULL,
            schema_version text        NOT NULL,
            format         integer     NOT NULL,
            state          bytea       NOT NULL,
            checksum       text        NOT NULL,
            size_bytes     bigint      NOT NULL,
            node_id        text,
            leader_epoch   bigint,
            created_at     timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX snapshots_position ON snapshots (position DESC);

        -- Membership is soft state (heartbeats), deliberately not event-sourced.
        CREATE TABLE cluster_nodes (
            node_id        text        PRIMARY KEY,
            http_address   text,
            gossip_address text,
            version        text,
            boot_epoch     bigint      NOT NULL DEFAULT 0,
            started_at     timestamptz NOT NULL DEFAULT now(),
            heartbeat_at   timestamptz NOT NULL DEFAULT now(),
            position       bigint      NOT NULL DEFAULT 0,
            info           jsonb       NOT NULL DEFAULT '{}'::jsonb
        );

        -- Fencing token: bumped by every new leader; writes by a stale leader check it.
        CREATE TABLE leader_epoch (
            id          smallint    PRIMARY KEY CHECK (id = 1),
            epoch       bigint      NOT NULL,
            node_id     text,
            acquired_at timestamptz
        );
        INSERT INTO leader_epoch VALUES (1, 0, NULL, NULL);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE leader_epoch;
        DROP TABLE cluster_nodes;
        DROP TABLE snapshots;
        DROP TABLE log_head;
        DROP TABLE events;
        """
    )
