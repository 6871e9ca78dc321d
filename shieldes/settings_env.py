"""Settings read from the environment without importing pydantic, for short CLI commands.

`shieldes.settings.Settings` is the one definition of every SHIELDES_* name, type, default, bound
and validator; `shieldes/settings_table.py` is generated from it (`python -m shieldes.settings --write`,
a test fails when it is stale). A CLI command reads its settings through `read_env`, which applies
that table and the validators below (Settings' own validators call them) to the environment the way
pydantic-settings does, for the plain spellings only: a value it cannot read with certainty (a .env
file, an out-of-bound or unusual number, a JSON list) makes it answer None, and the caller builds
`Settings()`, which accepts the value or refuses it with pydantic's message. Either way a command
sees the same values, and a bad value the same error.
"""

from __future__ import annotations

import operator
import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shieldes.client_address import parse_networks
from shieldes.roles import parse_role_map
from shieldes.settings_table import ENV_FILE, ENV_PREFIX, FIELDS

if TYPE_CHECKING:
    from shieldes.settings import Settings


# --- default factories and validators, shared with Settings ----------------------------------


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def default_data_dir() -> Path:
    """One per user, found from any folder: $XDG_DATA_HOME/shieldes, else ~/.local/share/shieldes."""
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "shieldes"


def lower(v: object) -> object:
    return v.strip().lower() if isinstance(v, str) else v


def absolute(v: Path) -> Path:
    return v.expanduser().absolute()  # the same place whatever folder a later command runs in


def blank_is_none(v: str | None) -> str | None:
    return v or None


def role_map(v: str) -> str:
    parse_role_map(v)  # refuse a bad map at start, not at the first sign-in
    return v


def networks(v: str) -> str:
    parse_networks(v)  # refuse a bad entry at start, not at the first request
    return v


def regexes(v: list[str]) -> list[str]:
    """Refuse a redaction pattern Python cannot compile at start, not when the first body is captured."""
    for pattern in v:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad SHIELDES_CAPTURE_REDACT entry {pattern!r} ({exc}): write Python regular "
                             'expressions in a JSON list, e.g. ["\\\\d{16}"]') from None
    return v


def days(v: object) -> object:
    """'30d', '2w' or a plain number of days."""
    if isinstance(v, str):
        text = v.strip().lower()
        for suffix, mult in (("d", 1), ("w", 7)):
            if text.endswith(suffix) and text[:-1].strip().isdigit():
                return int(text[:-1]) * mult
    return v


# Settings' validators by method name, as the table names them (generating it fails on one missing).
VALIDATORS: Mapping[str, Callable[[Any], Any]] = {
    "_lower": lower, "_absolute": absolute, "_blank_is_none": blank_is_none, "_role_map": role_map, "_days": days,
    "_networks": networks, "_regexes": regexes,
}
FACTORIES: Mapping[str, Callable[[], Any]] = {
    "default_data_dir": default_data_dir, "default_node_id": default_node_id, "list": list,
}

# --- reading the environment ------------------------------------------------------------------

_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_BOOLS = {"true": True, "false": False, "1": True, "0": False}


class _Unsure(Exception):
    """A value this reader does not parse with certainty: pydantic decides."""


def _parse(kind: str, text: str, choices: tuple[str, ...]) -> Any:
    if kind == "str":
        return text
    if kind == "path" and text:
        return Path(text)
    if kind == "int" and _INT.fullmatch(text):
        return int(text)
    if kind == "float" and _FLOAT.fullmatch(text):
        return float(text)
    if kind == "bool" and text in _BOOLS:
        return _BOOLS[text]
    if kind == "literal" and text in choices:
        return text
    raise _Unsure


_BOUNDS: Mapping[str, Callable[[Any, Any], bool]] = {
    "ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt,
}


def _within(value: Any, bounds: tuple[tuple[str, float], ...]) -> bool:
    return all(_BOUNDS[op](value, limit) for op, limit in bounds)


def read_values(environ: Mapping[str, str]) -> tuple[dict[str, Any], set[str]] | None:
    """Every setting's value and the names set in `environ`, or None when pydantic must decide."""
    if Path(ENV_FILE).exists():
        return None
    env: dict[str, str] = {}
    for key, spelled in environ.items():
        lowered = key.lower()
        if lowered in env:  # the same name in two cases: which one pydantic-settings takes is its business
            return None
        env[lowered] = spelled
    values: dict[str, Any] = {}
    given: set[str] = set()
    for name, (kind, _nullable, default, factory, bounds, choices, validators) in FIELDS.items():
        text = env.get((ENV_PREFIX + name).lower())
        if text is None:
            value = FACTORIES[factory]() if factory else default
        else:
            given.add(name)
            raw: Any = text
            for check, mode in validators:
                if mode == "before":
                    raw = VALIDATORS[check](raw)
            try:
                value = _parse(kind, raw, choices) if isinstance(raw, str) else raw
            except _Unsure:
                return None
            if type(value) is not type(default) and default is not None and not factory:
                return None  # a before-validator turned the text into something else than the field's type
            if bounds and not _within(value, bounds):
                return None
        for check, mode in validators:
            if mode == "after" and value is not None:
                try:
                    value = VALIDATORS[check](value)
                except ValueError:
                    return None
        values[name] = value
    return values, given


class EnvSettings:
    """Every field of `Settings` as an attribute, read by `read_values`; anything else a Settings
    has (its methods, `model_copy`) is answered by a real Settings, built on first use."""

    def __init__(self, values: dict[str, Any], given: set[str]) -> None:
        self.__dict__.update(values)
        self.model_fields_set = given
        self._settings: Settings | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._settings is None:
            from shieldes.settings import Settings

            self._settings = Settings()
        return getattr(self._settings, name)


def read_env(environ: Mapping[str, str] | None = None) -> Settings | None:
    """The settings from the environment without pydantic, or None when pydantic must read them."""
    read = read_values(os.environ if environ is None else environ)
    if read is None:
        return None
    settings: Settings = EnvSettings(*read)  # type: ignore[assignment]  # a Settings in every field
    return settings


# --- SHIELDES_* names that are no setting ----------------------------------------------------

# Read outside Settings: the CLI's own, and what the tests, benches and CI read (or name as `env:`
# references). With Settings' fields they are the names a node and `shieldes doctor` do not warn
# about; tests/unit/test_env_names.py fails when the project names one that is in neither.
OUTSIDE_SETTINGS = frozenset({
    # the CLI (`SHIELDES_ACTOR`: who a change is recorded as) and the examples' scripts
    "SHIELDES_ACTOR", "SHIELDES_URL", "SHIELDES_KEY", "SHIELDES_MODEL", "SHIELDES_ANTHROPIC_MODEL", "SHIELDES_BIN",
    "SHIELDES_RESPONSES",
    # tests, benches and CI
    "SHIELDES_TEST_DATABASE_URL", "SHIELDES_TEST_DATA_DIR", "SHIELDES_BENCH_DATABASE_URL", "SHIELDES_BENCH_OPCODES",
    "SHIELDES_NEMESIS_SEED", "SHIELDES_SCREENSHOTS_TO", "SHIELDES_TEST_CHROMEDRIVER", "SHIELDES_TEST_CHROMIUM",
    "SHIELDES_TEST_OLD_RELEASE_LACKS", "SHIELDES_TEST_OLD_RELEASE_SNAPSHOT_FORMATS",
    "SHIELDES_TEST_UPSTREAM_KEY", "SHIELDES_CLUSTER_TEST_UPSTREAM_KEY", "SHIELDES_ROLLING_UPSTREAM_KEY",
    "SHIELDES_SCHEMA_UPGRADE_UPSTREAM_KEY", "SHIELDES_UPGRADE_UPSTREAM_KEY", "SHIELDES_TEST_BEDROCK_KEY",
    "SHIELDES_TEST_GEMINI_KEY", "SHIELDES_TEST_FUZZ_GEMINI_KEY", "SHIELDES_TEST_SU_BEDROCK", "SHIELDES_TEST_SU_GEMINI",
    "SHIELDES_TEST_XP_BEDROCK", "SHIELDES_TEST_XP_GEMINI", "SHIELDES_TEST_MB_BEDROCK", "SHIELDES_TEST_MB_GEMINI",
    "SHIELDES_TEST_TEAM", "SHIELDES_TEST_UNSET_MCP_VAR",
    "SHIELDES_TEST_SURELY_UNSET_KEY",
})


def known_env_names() -> frozenset[str]:
    """Every SHIELDES_* name that means something: each setting's, and OUTSIDE_SETTINGS."""
    return frozenset(ENV_PREFIX + name.upper() for name in FIELDS) | OUTSIDE_SETTINGS


_DOTENV_NAME = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def dotenv_names(path: Path | str = ENV_FILE) -> list[str]:
    """The names a .env file sets (none if there is no such file), as pydantic-settings reads it."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [m.group(1) for m in map(_DOTENV_NAME.match, text.splitlines()) if m]
