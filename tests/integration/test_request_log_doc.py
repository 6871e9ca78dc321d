"""docs/observability.md's table of the request log names every column of the view `request_log`,
each once, and nothing the view lacks."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import psycopg

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "observability.md"


def documented_columns() -> list[str]:
    table = DOC.read_text().split("\n## The request log", 1)[1].split("\n### ", 1)[0]
    return [name for line in table.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([a-z_]+)`", line.split(" | ")[0])]


def test_the_documented_columns_are_the_views(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:  # (a database at alembic head)
        view = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns"
                                           " WHERE table_name = 'request_log' ORDER BY ordinal_position")]
    named = documented_columns()
    assert sorted(set(named)) == sorted(view)
    assert [c for c, n in Counter(named).items() if n > 1] == []  # one row says what a column holds
