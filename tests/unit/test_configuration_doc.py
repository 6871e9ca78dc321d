"""docs/configuration.md lists every setting in shieldes/settings.py with its env name, default and
meaning. The table is generated from the Settings model; regenerate it after changing settings:

    PYTHONPATH=. python -m tests.unit.test_configuration_doc --write
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from shieldes.settings import Settings

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "configuration.md"
REGENERATE = "run: PYTHONPATH=. python -m tests.unit.test_configuration_doc --write"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"

# Meanings for fields declared without `description=`; a field with neither fails the test.
MEANINGS = {
    "host": "address the HTTP server binds to",
    "port": "HTTP port (OpenAI-compatible API, /health, /ready, /metrics)",
    "gossip_port": "gRPC gossip port peers push counters to",
    "max_body_bytes": "largest accepted request body (32 MiB: what Anthropic takes; an agent's turn carries every "
                      "screenshot of its conversation); larger bodies get 413 `request_too_large`",
    "upstream_connect_timeout": "seconds to connect to an upstream provider",
    "upstream_timeout": "seconds an upstream call may take in total (long generations included)",
    "retry_backoff": "seconds to wait before retrying on another deployment",
    "breaker_cooldown": "seconds an open circuit waits before letting a trial request through",
    "gossip_interval": "seconds between gossip pushes of hot counters",
    "heartbeat_interval": "seconds between heartbeats in the cluster_nodes table",
    "snapshot_every_events": "the leader writes a snapshot after this many new events",
    "snapshot_every_seconds": "... or after this many seconds, whichever comes first",
    "snapshots_kept": "snapshots kept; older ones are deleted",
    "compact_retain_seconds": "raw usage events younger than this are kept; older ones fold into rollups",
    "compact_interval": "seconds between compaction runs on the leader",
}


def _type(annotation: Any) -> str:
    if isinstance(annotation, type):
        return {"str": "string", "Path": "path", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__)
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType):
        return " or ".join(_type(a) for a in annotation.__args__ if a is not type(None))
    return str(annotation)


def _default(name: str, field: Any) -> str:
    if field.default_factory is not None:
        return {"node_id": "`<hostname>-<pid>`",
                "data_dir": "`$XDG_DATA_HOME/shieldes`, else `~/.local/share/shieldes`"}.get(name, "(computed)")
    value = field.default
    if value is None or value is PydanticUndefined:
        return "unset"
    if value == "":
        return "empty"
    return f"`{value}`"


def render_table() -> str:
    rows = ["| Variable | Default | Type | Meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = field.description or MEANINGS.get(name)
        assert meaning, f"setting {name!r} has no description: add description= to its Field in settings.py"
        meaning = meaning.replace("|", "\\|")
        env, default, kind = f"`SHIELDES_{name.upper()}`", _default(name, field), _type(field.annotation)
        rows.append(f"| {env} | {default} | {kind} | {meaning} |")
    return "\n".join(rows)


def _section(text: str) -> str:
    assert START in text and END in text, f"{DOC} lacks the {START} ... {END} markers"
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def test_every_setting_is_documented() -> None:
    documented = _section(DOC.read_text())
    envs = [f"SHIELDES_{n.upper()}" for n in Settings.model_fields]
    missing = [e for e in envs if f"`{e}`" not in documented]
    assert not missing, f"docs/configuration.md misses {missing}; {REGENERATE}"
    assert documented == render_table(), f"docs/configuration.md is out of date with settings; {REGENERATE}"


def write() -> None:
    text = DOC.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    DOC.write_text(f"{before}{START}\n{render_table()}\n{END}{after}")


if __name__ == "__main__" and "--write" in sys.argv:
    write()
