"""The tag filter of the request log (`shieldes logs --tag`, GET /admin/v1/requests?tag=) is answered
from the GIN index on request_log_rows.tags (migration 0026), on the partitions that existed when
it was made and on those made later, not by reading every row of every day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from shieldes.requestlog.store import LogFilter, build_query, ensure_partitions, query
from tests import pg

_FILL = """
    INSERT INTO request_log_rows (request_id, started_at, finished_at, node_id, method, route, path, status,
                                  latency_ms, tags)
    SELECT 'r-' || %(day)s || '-' || i, %(at)s::timestamptz + i * interval '1 ms',
           %(at)s::timestamptz + i * interval '1 ms', 'n1', 'POST', '/v1/chat/completions',
           '/v1/chat/completions', 200, 1.0,
           CASE WHEN i %% 5000 = 0 THEN ARRAY['rare', 'search'] WHEN i %% 3 = 0 THEN NULL
                ELSE ARRAY['search', 'team-' || (i %% 40)] END
    FROM generate_series(1, %(n)s) AS i
"""


async def test_the_tag_filter_reads_the_gin_index_on_every_partition(database_url: str) -> None:
    """Without the index the filter read every row of every partition (a sequential scan per day)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=1), today, today + timedelta(days=5)]  # the last made after the migration
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await pg.drop_request_log_days(conn)  # only these days (the template has the session's)
        await ensure_partitions(conn, [d.date() for d in days])
        for d in days:
            await conn.execute(_FILL, {"day": f"{d:%Y%m%d}", "at": d + timedelta(hours=1), "n": 20_000})
        await conn.execute("ANALYZE request_log_rows")
        sql, params = build_query(LogFilter(tag="rare"), 100)
        cur = await conn.execute("EXPLAIN " + sql, params)  # type: ignore[arg-type]  # (built, not literal)
        plan = "\n".join(row[0] for row in await cur.fetchall())
        for d in days:
            assert f"Bitmap Index Scan on request_log_rows_p{d:%Y%m%d}_tags_idx" in plan, plan
        assert "Seq Scan" not in plan, plan
        rows = await query(conn, LogFilter(tag="rare"), 100)
        assert len(rows) == 3 * 4 and all("rare" in r["tags"] for r in rows)
        assert len(await query(conn, LogFilter(tag="team-7"), 1000)) == 1000  # (a common one still answers)
