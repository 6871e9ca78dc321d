"""request_log_rows.tags: a GIN index for the tag filter

`shieldes logs --tag T` and GET /admin/v1/requests?tag=T read the rows whose `tags` hold T: without
an index every row of every day's partition is read, and a day of busy traffic is millions. A GIN
index over the array answers `tags @> ARRAY[T]` (the filter's form: `T = ANY(tags)` cannot use it).
An index made on the partitioned table is made on each partition, and on every partition created
later (ensure_partitions' PARTITION OF), so the daily partitions need nothing more. Rows without
tags (NULL) take no room in it.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS request_log_rows_tags ON request_log_rows USING gin (tags)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS request_log_rows_tags")
