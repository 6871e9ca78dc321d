"""The CLI's pydantic-free settings reader against Settings itself: same values and same names set,
or None (pydantic decides) for every value it is not sure of, so a bad value gets pydantic's error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from shieldes import settings_table
from shieldes.settings import Settings, table_source
from shieldes.settings_env import read_env, read_values

# (variable, values): plain spellings the reader takes, spellings only pydantic reads, bad values
CASES: list[tuple[str, list[str]]] = [
    ("SHIELDES_DATABASE_URL", ["postgresql://u@h/db", "", " "]),
    ("SHIELDES_DATA_DIR", ["/srv/shieldes", "rel/dir", "~/x", ""]),
    ("SHIELDES_PORT", ["8081", "0", "65535", "65536", "-1", "007", "+5", " 5", "1_000", "5.0", "x", ""]),
    ("SHIELDES_NODE_TIMEOUT", ["2.5", "3", "0", "-1", "1e3", ".5", "nan", "inf", "x", ""]),
    ("SHIELDES_GOSSIP_FANOUT", ["-1", "-2", "-40", "-100001", "3"]),
    ("SHIELDES_ALLOW_UNPRICED", ["true", "false", "1", "0", "yes", "TRUE", "maybe", ""]),
    ("SHIELDES_LOG_LEVEL", ["debug", " WARNING ", "Info", "verbose", ""]),
    ("SHIELDES_CAPTURE_BODIES", ["all", "ALL", "some"]),
    ("SHIELDES_REQUEST_LOG_RETENTION", ["30", "30d", "2w", "0", "0d", "x"]),
    ("SHIELDES_OIDC_ROLE_MAP", ["platform=admin", "platform=root", ""]),
    ("SHIELDES_OIDC_ISSUER", ["", "https://id.example"]),
    ("SHIELDES_CLUSTER_SECRET", ["s3cret", ""]),
    ("SHIELDES_GOSSIP_TLS_CERT", ["/etc/cert.pem", ""]),
    ("SHIELDES_CAPTURE_REDACT", ['["\\\\d{16}"]', "nope"]),
    ("shieldes_node_id", ["lower-case-name"]),
]


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """A clean environment (no SHIELDES_* variable, no .env) that Settings() reads too."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("SHIELDES_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return os.environ  # type: ignore[return-value]


def pydantic_reads(environ: dict[str, str]) -> tuple[dict[str, Any], set[str]] | None:
    try:
        settings = Settings()
    except (ValidationError, SettingsError):
        return None
    return settings.model_dump(), set(settings.model_fields_set)


def test_the_table_is_generated_from_settings() -> None:
    """Stale after a change to Settings: `PYTHONPATH=. python -m shieldes.settings --write`."""
    assert Path(settings_table.__file__).read_text() == table_source(), \
        "shieldes/settings_table.py is stale: run PYTHONPATH=. python -m shieldes.settings --write"


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, values in CASES for v in values])
def test_same_values_as_settings_or_left_to_pydantic(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    expected = pydantic_reads(environ)
    got = read_values(environ)
    if expected is None:  # a bad value: never accepted here, so pydantic's message is the one shown
        assert got is None
    elif got is not None:
        assert got == expected


def test_plain_values_are_read_without_pydantic(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    plain = {"SHIELDES_DATABASE_URL": "postgresql://u@h/db", "SHIELDES_PORT": "8081", "SHIELDES_NODE_TIMEOUT": "2.5",
             "SHIELDES_ALLOW_UNPRICED": "true", "SHIELDES_LOG_LEVEL": "Debug", "SHIELDES_DATA_DIR": "rel",
             "SHIELDES_REQUEST_LOG_RETENTION": "2w", "SHIELDES_CLUSTER_SECRET": "s",
             "SHIELDES_OIDC_ROLE_MAP": "a=admin"}
    for name, value in plain.items():
        monkeypatch.setenv(name, value)
    got = read_values(environ)
    assert got is not None and got == pydantic_reads(environ)
    assert got[0]["request_log_retention"] == 14 and got[0]["data_dir"] == Path("rel").absolute()
    settings = read_env(environ)
    assert settings is not None and settings.node_timeout == 2.5 and settings.static_peers() == []  # a method


def test_defaults_equal_settings_defaults(environ: dict[str, str]) -> None:
    assert read_values(environ) == pydantic_reads(environ)


def test_a_dotenv_file_is_left_to_pydantic(environ: dict[str, str]) -> None:
    Path(".env").write_text("SHIELDES_PORT=8082\n")
    assert read_values(environ) is None
    assert Settings().port == 8082

