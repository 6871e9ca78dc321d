"""The CLI holds no SQL: its queries over the log's views live in `shieldes/events/` (and the
snapshots' in `shieldes/snapshots/store.py`), where the admin API finds the same ones. A node's
`cluster_nodes` row is written only by cluster/membership.py (the loader registers through it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import shieldes
import shieldes.cli

SQL = re.compile(r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+INTO\b|\bDELETE\s+FROM\b|\bUPDATE\s+\w+\s+SET\b")

NODES_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+cluster_nodes\b")


def sql_literals(path: Path, sql: re.Pattern[str] = SQL) -> list[str]:
    tree = ast.parse(path.read_text())
    return [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and sql.search(node.value)]


def test_no_cli_module_holds_sql() -> None:
    cli = Path(shieldes.cli.__file__).parent
    found = [hit for module in sorted(cli.glob("*.py")) for hit in sql_literals(module)]
    assert found == []


def test_only_membership_writes_cluster_nodes() -> None:
    root = Path(shieldes.__file__).parent
    writers = {str(module.relative_to(root)) for module in root.rglob("*.py") if sql_literals(module, NODES_WRITE)}
    assert writers == {"cluster/membership.py"}


def test_the_check_sees_sql(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text('X = 1\nQ = """\n    SELECT coalesce(sum(cost_nusd), 0) FROM usage_deltas\n"""\n')
    assert sql_literals(module) == ["module.py:2"]
    assert SQL.search("SELECT 1 AS one FROM virtual_keys WHERE key_name = %(key)s")
    assert SQL.search("\n    select key_id,\n sum(x)\n    FROM usage_daily") is None  # statements are upper case
    assert NODES_WRITE.search("WITH beat AS (UPDATE cluster_nodes SET heartbeat_at = now()")
    assert NODES_WRITE.search("SELECT node_id FROM cluster_nodes") is None
