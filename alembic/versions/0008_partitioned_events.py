"""events partitioned by position range; partitions are created ahead of the head by appends

The existing table becomes the first partition in place (no copy): it covers positions up to the
next partition boundary above the head, however many events it holds, and compaction swaps it like
any other once it lies wholly below the cutoff. The views that read `events` are dropped and
recreated with the same definitions and grants (they would otherwise keep pointing at the old
table). `log_head.partition_size` is the size of partitions created from then on;
`log_head.partitions_end` the first position no partition covers yet.

Downgrade copies every event back into one plain table (as long as it takes to copy the log).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PARTITION_SIZE = 100_000
_COLUMNS = """
    position    bigint      NOT NULL,
    stream      text        NOT NULL,
    type        text        NOT NULL,
    version     integer     NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    seq         bigint,
    prev_hash   text,
    hash        text
"""
_COMMENT = "COMMENT ON TABLE events IS 'shieldes event log: append-only, positions are commit-ordered'"


def _views_reading_events(conn: Any) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(name, definition, [(grantee, privilege)]) of every view that reads `events`, directly or
    through another view, in creation order (a view only refers to older ones)."""
    rows = conn.exec_driver_sql(
        """
        WITH RECURSIVE reading(oid) AS (
            SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
            WHERE d.refobjid = 'events'::regclass AND r.ev_class <> 'events'::regclass
            UNION
            SELECT r.ev_class FROM reading JOIN pg_depend d ON d.refobjid = reading.oid
            JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> reading.oid
        )
        SELECT c.oid, c.relname, pg_get_viewdef(c.oid),
               coalesce((SELECT array_agg(a.grantee::regrole::text || ' ' || a.privilege_type)
                         FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner), '{}')
        FROM pg_class c WHERE c.oid IN (SELECT oid FROM reading) AND c.relkind = 'v'
        ORDER BY c.oid
        """
    ).fetchall()
    return [(name, definition, [tuple(g.split(" ", 1)) for g in grants])  # type: ignore[misc]
            for _, name, definition, grants in rows]


def _drop_views(conn: Any, views: list[tuple[str, str, list[tuple[str, str]]]]) -> None:
    for name, _, _ in reversed(views):
        conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}" CASCADE')


def _create_views(conn: Any, views: list[tuple[str, str, list[tuple[str, str]]]]) -> None:
    for name, definition, grants in views:
        conn.exec_driver_sql(f'CREATE VIEW "{name}" AS {definition}')
        for grantee, privilege in grants:
            conn.exec_driver_sql(f'GRANT {privilege} ON "{name}" TO {grantee}')


def upgrade() -> None:
    conn = op.get_bind()
    views = _views_reading_events(conn)
    _drop_views(conn, views)
    head = conn.exec_driver_sql("SELECT position FROM log_head WHERE id = 1").scalar_one()
    end = (int(head) // PARTITION_SIZE + 1) * PARTITION_SIZE
    conn.exec_driver_sql(
        f"""
        ALTER TABLE events RENAME TO events_p0;
        ALTER INDEX events_pkey RENAME TO events_p0_pkey;
        ALTER INDEX events_stream_position RENAME TO events_p0_stream_position;
        ALTER INDEX events_type_position RENAME TO events_p0_type_position;
        -- uniqueness of (stream, seq) is the append's check under the append lock (a unique index
        -- on a partitioned table must include the position)
        DROP INDEX events_stream_seq;
        CREATE TABLE events ({_COLUMNS}, PRIMARY KEY (position)) PARTITION BY RANGE (position);
        {_COMMENT};
        CREATE INDEX events_stream_position ON events (stream, position);
        CREATE INDEX events_type_position ON events (type, position);
        CREATE INDEX events_stream_seq ON events (stream, seq) WHERE seq IS NOT NULL;
        ALTER TABLE events_p0 ADD CONSTRAINT events_p0_bounds CHECK (position >= 0 AND position < {end});
        ALTER TABLE events ATTACH PARTITION events_p0 FOR VALUES FROM (0) TO ({end});
        ALTER TABLE events_p0 DROP CONSTRAINT events_p0_bounds;
        CREATE TABLE events_p{end} (LIKE events INCLUDING DEFAULTS);
        ALTER TABLE events ATTACH PARTITION events_p{end} FOR VALUES FROM ({end}) TO ({end + PARTITION_SIZE});
        ALTER TABLE log_head ADD COLUMN partition_size bigint NOT NULL DEFAULT {PARTITION_SIZE}
            CHECK (partition_size > 0);
        ALTER TABLE log_head ADD COLUMN partitions_end bigint NOT NULL DEFAULT 0;
        UPDATE log_head SET partitions_end = {end + PARTITION_SIZE} WHERE id = 1;
        COMMENT ON COLUMN log_head.partition_size IS
            'positions per partition of events created from now on (appends create them ahead of the head)';
        COMMENT ON COLUMN log_head.partitions_end IS 'the first position no partition of events covers yet';
        """
    )
    _create_views(conn, views)


def downgrade() -> None:
    conn = op.get_bind()
    views = _views_reading_events(conn)
    _drop_views(conn, views)
    conn.exec_driver_sql(
        f"""
        ALTER TABLE events RENAME TO events_partitioned;
        ALTER INDEX events_pkey RENAME TO events_partitioned_pkey;
        ALTER INDEX events_stream_position RENAME TO events_partitioned_stream_position;
        ALTER INDEX events_type_position RENAME TO events_partitioned_type_position;
        ALTER INDEX events_stream_seq RENAME TO events_partitioned_stream_seq;
        CREATE TABLE events ({_COLUMNS}, PRIMARY KEY (position));
        {_COMMENT};
        INSERT INTO events SELECT * FROM events_partitioned ORDER BY position;
        CREATE INDEX events_stream_position ON events (stream, position);
        CREATE INDEX events_type_position ON events (type, position);
        CREATE UNIQUE INDEX events_stream_seq ON events (stream, seq) WHERE seq IS NOT NULL;
        DROP TABLE events_partitioned;
        ALTER TABLE log_head DROP COLUMN partition_size, DROP COLUMN partitions_end;
        """
    )
    _create_views(conn, views)
