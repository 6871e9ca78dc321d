"""Alembic environment: the URL comes from shieldes settings (SHIELDES_DATABASE_URL or embedded)."""

from __future__ import annotations

from logging.config import fileConfig

import psycopg
from sqlalchemy import create_engine, pool

from alembic import context
from shieldes.db import acquire, libpq_url, sqlalchemy_url
from shieldes.settings import Settings
from shieldes.tables import metadata

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# `shieldes db upgrade` passes its URL; a bare `alembic upgrade head` holds the database (the
# embedded one is started if needed) until the migration is done, then releases it
held = None if config.attributes.get("database_url") else acquire(Settings(), "alembic")
url = config.attributes.get("database_url") or (held.url if held else "")


def run_migrations_offline() -> None:
    context.configure(url=sqlalchemy_url(url), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # psycopg (libpq) parses the URL, so multi-host failover URLs work as they do for the nodes;
    # SQLAlchemy's own URL parser cannot read `host1:5432,host2:5432`.
    conninfo = libpq_url(url)
    engine = create_engine("postgresql+psycopg://", poolclass=pool.NullPool,
                           creator=lambda: psycopg.connect(conninfo))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


try:
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()
finally:
    if held is not None:
        held.release()
