"""`bench/bench_gateway.py --baseline DIR`: the baseline node runs on a database of its own, migrated
and set up by DIR's own CLI, so a tree whose migration head differs from the current one (any
release before the newest migration) still serves beside the node; a tree whose CLI lacks what the
setup needs ends the run with one line naming it, and no database is left behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from shieldes import db

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_gateway.py"
NEXT_REVISION = f"{int(db.SCHEMA_HEAD) + 1:04d}"


def databases(server: str, names: list[str]) -> list[str]:
    with psycopg.connect(server, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)).fetchall()
    return [name for (name,) in rows]


def run_bench(server: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT),
                                            "SHIELDES_BENCH_DATABASE_URL": server, **(env or {})})


def tree_with_one_more_migration(dest: Path) -> Path:
    """A copy of this tree whose schema head is one migration past the current one: its node refuses
    a database the current tree migrated, as a tree from before a migration refuses a newer one."""
    shutil.copytree(ROOT / "shieldes", dest / "shieldes", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "alembic", dest / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", dest / "alembic.ini")
    (dest / "alembic" / "versions" / f"{NEXT_REVISION}_noop.py").write_text(
        f'revision = "{NEXT_REVISION}"\ndown_revision = "{db.SCHEMA_HEAD}"\nbranch_labels = None\n'
        "depends_on = None\n\n\ndef upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n")
    source = dest / "shieldes" / "db.py"
    text = source.read_text()
    assert f'SCHEMA_HEAD = "{db.SCHEMA_HEAD}"' in text
    source.write_text(text.replace(f'SCHEMA_HEAD = "{db.SCHEMA_HEAD}"', f'SCHEMA_HEAD = "{NEXT_REVISION}"'))
    return dest


def test_the_baseline_serves_from_a_database_its_own_tree_migrated(pg_server: str, tmp_path: Path) -> None:
    tree = tree_with_one_more_migration(tmp_path / "base")
    done = run_bench(pg_server, "--only", "json", "--repeat", "1", "--rounds", "1", "--duration", "1",
                     "--connections", "4", "--moderate", "1", "--moderate-seconds", "1", "--baseline", str(tree))
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"^databases: the node's (\w+), the baseline's (\w+) \(migrated by .* to revision (\w+)\)$",
                      done.stdout, re.M)
    assert found, done.stdout
    node_db, base_db, revision = found.groups()
    assert node_db != base_db
    assert revision == NEXT_REVISION  # migrated by the baseline tree's code, not the current tree's
    row = re.search(r"^\| json \| shieldes node, baseline \(base\) \| (\d+) \|.*\| (\d+) \|$", done.stdout, re.M)
    assert row, done.stdout
    rps, errors = int(row.group(1)), int(row.group(2))
    assert rps > 0 and errors == 0, row.group(0)
    assert databases(pg_server, [node_db, base_db]) == []  # both dropped at the end


STUB_CLI = '''"""A tree whose `provider add` has no --responses, answering as click does."""
import os
import sys

with open(os.environ["STUB_CALLS"], "a") as calls:
    calls.write(os.environ["SHIELDES_DATABASE_URL"] + " " + " ".join(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["provider", "add"] and "--responses" in sys.argv:
    sys.exit("Usage: shieldes provider add [OPTIONS] NAME\\nTry 'shieldes provider add --help' for help.\\n\\n"
             "Error: No such option: --responses")
'''


def test_a_tree_lacking_a_flag_the_setup_needs_ends_the_run_in_one_line(pg_server: str, tmp_path: Path) -> None:
    tree = tmp_path / "old"
    (tree / "shieldes").mkdir(parents=True)
    (tree / "shieldes" / "__init__.py").write_text("")
    (tree / "shieldes" / "__main__.py").write_text(STUB_CLI)
    calls = tmp_path / "calls"
    done = run_bench(pg_server, "--responses", "--only", "responses-stream", "--repeat", "1", "--rounds", "1",
                     "--duration", "1", "--baseline", str(tree), env={"STUB_CALLS": str(calls)})
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"error: --baseline {tree}: ") and "--responses native" in lines[0], lines[0]
    assert lines[0].endswith("No such option: --responses; use a tree that has it (or leave out the modes that "
                             "need it)"), lines[0]
    made = calls.read_text().splitlines()
    assert [c.split(" ", 1)[1].split(" --")[0] for c in made] == ["db upgrade", "provider add fake"]
    url = made[0].split(" ", 1)[0]
    assert all(c.startswith(url + " ") for c in made)  # one database, the baseline's own
    assert databases(pg_server, [urlsplit(url).path.lstrip("/")]) == []  # dropped again


def test_the_setup_asks_for_native_responses_only_when_a_responses_mode_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chat and Messages do not depend on `--responses native`: a run without a Responses mode leaves
    the flag out, so a tree from before it still runs; the key's limits are the node's."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import baseline_tree
    import bench_gateway

    limits = bench_gateway.KEY_LIMITS
    with_responses = baseline_tree.setup_commands("http://up", limits, responses=True)
    without = baseline_tree.setup_commands("http://up", limits, responses=False)
    assert with_responses[1][-2:] == ["--responses", "native"] and "--responses" not in without[1]
    assert with_responses[0] == ["db", "upgrade"] and with_responses[2:] == without[2:]
    key = without[3]
    assert key[:3] == ["--json", "key", "create"]
    assert dict(zip(key[3::2], key[4::2], strict=True)) == {
        "--name": "bench", "--rpm": str(limits.rpm), "--tpm": str(limits.tpm), "--budget": str(limits.budget_usd),
        "--budget-period": limits.budget_period}
