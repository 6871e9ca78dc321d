"""config_index.idempotency_key: an admin API create with an Idempotency-Key finds an earlier
write with the same key in the index instead of scanning the config stream

`execute_live` looks the key up before every create that carries one (the CLI's remote mode sends
one with each `key create`, `team create`, `provider add` and `admin-token create`). The lookup
matched `metadata->>'idempotency_key'` over every config event: about 180 ms at a million keys,
more than the rest of the request. The trigger of migration 0010 now also copies the key into
config_index, which holds it for the few events that have one (a partial index).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ENTITY = ("('virtual_key.created', 'virtual_key.updated', 'virtual_key.revoked', 'virtual_key.rotated', "
          "'rate_limit.set', 'budget.set', 'budget.removed', 'team.created')")


def _row(e: str) -> str:
    """The config_index row of config event `e` as migration 0010 wrote it."""
    return (
        f"{e}.position, {e}.type, {e}.type NOT IN {ENTITY},"
        f" CASE WHEN {e}.type IN {ENTITY}"
        f" THEN coalesce({e}.data->>'id', {e}.data->>'key_id', {e}.data->>'subject_id') END,"
        f" CASE WHEN {e}.type IN ('virtual_key.created', 'team.created') THEN {e}.data->>'name' END,"
        f" CASE WHEN {e}.type IN ('virtual_key.created', 'virtual_key.rotated') THEN {e}.data->>'key_hash' END,"
        f" CASE WHEN {e}.type IN ('virtual_key.created', 'virtual_key.updated') THEN {e}.data->>'team_id' END"
    )


def _function(row: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION config_index_write() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                DELETE FROM config_index WHERE position = OLD.position;
            END IF;
            IF TG_OP <> 'DELETE' AND NEW.stream = 'config' THEN
                INSERT INTO config_index SELECT {row};
            END IF;
            RETURN NULL;
        END $$;
    """


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE config_index ADD COLUMN idempotency_key text;  -- actor \\x1f Idempotency-Key
        CREATE INDEX config_index_idempotency_key ON config_index (idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        {_function(_row("NEW") + ", NEW.metadata->>'idempotency_key'")}
        UPDATE config_index c SET idempotency_key = e.metadata->>'idempotency_key'
            FROM events e WHERE e.stream = 'config' AND e.position = c.position AND e.metadata ? 'idempotency_key';
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        {_function(_row("NEW"))}
        DROP INDEX config_index_idempotency_key;
        ALTER TABLE config_index DROP COLUMN idempotency_key;
        """
    )
