"""Indexes for a key command's scoped read of the config stream

`shieldes key create` and `key revoke` fold only the shared config (every config event that is not
about one key or one team) and the events of the keys and teams they name, instead of every key
(shieldes/events/scope.py). These partial indexes cover the config stream only, so usage appends
do not pay for them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ENTITY = ("('virtual_key.created', 'virtual_key.updated', 'virtual_key.revoked', 'virtual_key.rotated', "
          "'rate_limit.set', 'budget.set', 'budget.removed', 'team.created')")


def upgrade() -> None:
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
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX events_config_key_hash;
        DROP INDEX events_config_name;
        DROP INDEX events_config_subject;
        DROP INDEX events_config_shared;
        """
    )
