"""config_index: the config stream's events by the key or team they are about, outside `events`

A key command's scoped read (shieldes/events/scope_sql.py) finds the events of the keys and teams
it names and the shared config. Through partial indexes on `events` (migration 0009) every lookup
was planned over every partition and its indexes: 20-30 ms of planning in a fresh backend at 1M
keys, against 1-3 ms to run it. This plain table holds, per config event, what the lookup matches
on (type, subject, name, key hash, team), so the lookup plans over one small relation and the
events are then read by position, which prunes `events` to the partitions holding them.

Triggers on `events` keep it in step in the writing transaction (appends, bulk loads, a repair by
hand); rows of other streams never reach the trigger function (WHEN). Compaction leaves config
events where they are (it moves kept rows into a replacement partition at the same positions), so
the table needs no part in it. The partial indexes of 0009 served that lookup only and are dropped.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ENTITY = ("('virtual_key.created', 'virtual_key.updated', 'virtual_key.revoked', 'virtual_key.rotated', "
          "'rate_limit.set', 'budget.set', 'budget.removed', 'team.created')")


def _row(e: str) -> str:
    """The config_index row of config event `e` (a row of `events`), as a SELECT list."""
    return (
        f"{e}.position, {e}.type, {e}.type NOT IN {ENTITY},"
        f" CASE WHEN {e}.type IN {ENTITY}"
        f" THEN coalesce({e}.data->>'id', {e}.data->>'key_id', {e}.data->>'subject_id') END,"
        f" CASE WHEN {e}.type IN ('virtual_key.created', 'team.created') THEN {e}.data->>'name' END,"
        f" CASE WHEN {e}.type IN ('virtual_key.created', 'virtual_key.rotated') THEN {e}.data->>'key_hash' END,"
        f" CASE WHEN {e}.type IN ('virtual_key.created', 'virtual_key.updated') THEN {e}.data->>'team_id' END"
    )


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE config_index (
            position bigint  PRIMARY KEY,
            type     text    NOT NULL,
            shared   boolean NOT NULL,  -- not about one key or team: every scoped read selects it
            subject  text,              -- the key's or team's id (events about one key or team)
            name     text,              -- virtual_key.created, team.created
            key_hash text,              -- virtual_key.created, virtual_key.rotated
            team_id  text               -- virtual_key.created, virtual_key.updated
        );
        COMMENT ON TABLE config_index IS
            'the config events of events by key or team (kept by triggers on events): scoped reads';
        CREATE INDEX config_index_shared ON config_index (position) WHERE shared;
        CREATE INDEX config_index_subject ON config_index (subject);
        CREATE INDEX config_index_name ON config_index (name);
        CREATE INDEX config_index_key_hash ON config_index (key_hash);

        CREATE FUNCTION config_index_write() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                DELETE FROM config_index WHERE position = OLD.position;
            END IF;
            IF TG_OP <> 'DELETE' AND NEW.stream = 'config' THEN
                INSERT INTO config_index SELECT {_row("NEW")};
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER config_index_insert AFTER INSERT ON events
            FOR EACH ROW WHEN (NEW.stream = 'config') EXECUTE FUNCTION config_index_write();
        CREATE TRIGGER config_index_update AFTER UPDATE ON events
            FOR EACH ROW WHEN (OLD.stream = 'config' OR NEW.stream = 'config') EXECUTE FUNCTION config_index_write();
        CREATE TRIGGER config_index_delete AFTER DELETE ON events
            FOR EACH ROW WHEN (OLD.stream = 'config') EXECUTE FUNCTION config_index_write();

        INSERT INTO config_index SELECT {_row("e")} FROM events e WHERE e.stream = 'config';
        ANALYZE config_index;

        DROP INDEX events_config_key_hash;
        DROP INDEX events_config_name;
        DROP INDEX events_config_subject;
        DROP INDEX events_config_shared;
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        CREATE INDEX events_config_shared ON events (position)
            WHERE stream = 'config' AND type NOT IN {ENTITY};
        CREATE INDEX events_config_subject ON events ((coalesce(data->>'id', data->>'key_id', data->>'subject_id')))
            WHERE stream = 'config' AND type IN {ENTITY};
        CREATE INDEX events_config_name ON events ((data->>'name'))
            WHERE stream = 'config' AND type IN ('virtual_key.created', 'team.created');
        CREATE INDEX events_config_key_hash ON events ((data->>'key_hash'))
            WHERE stream = 'config' AND type IN ('virtual_key.created', 'virtual_key.rotated');
        DROP TRIGGER config_index_delete ON events;
        DROP TRIGGER config_index_update ON events;
        DROP TRIGGER config_index_insert ON events;
        DROP FUNCTION config_index_write();
        DROP TABLE config_index;
        """
    )
