"""Unknown SHIELDES_* names: the decision (environment names + known names -> warnings), and the
list of names the project uses outside Settings kept whole."""

from __future__ import annotations

import re
from pathlib import Path

from shieldes.checks import Finding, unknown_setting_findings, unknown_setting_lines
from shieldes.settings import Settings
from shieldes.settings_env import OUTSIDE_SETTINGS, dotenv_names, known_env_names

ROOT = Path(__file__).resolve().parents[2]
KNOWN = known_env_names()
# SHIELDES_ words that name no variable: Python constants, a placeholder, the misspellings below and
# in docs/configuration.md
NOT_VARIABLES = {"SHIELDES_EXPORT_VERSION", "SHIELDES_EXPORT_AS_OTHER", "SHIELDES_X", "SHIELDES_GOSIP_INTERVAL",
                 "SHIELDES_DATABSE_URL", "SHIELDES_WHOLLY_UNRELATED_THING", "SHIELDES_LOGLEVEL", "SHIELDES_PORTT",
                 "SHIELDES_ADMIN_TOKN", "SHIELDES_X_Y",
                 "SHIELDES_OWN_OPENAI_KEY"}  # (an operator's own name a provider references: test_firstrun)


def test_a_misspelt_setting_is_named_with_the_closest_known_name() -> None:
    assert unknown_setting_findings(["SHIELDES_GOSIP_INTERVAL", "PATH", "HOME"], KNOWN) == [Finding(
        "settings", "SHIELDES_GOSIP_INTERVAL", True,
        "SHIELDES_GOSIP_INTERVAL is set but is no shieldes setting: it is ignored; did you mean "
        "SHIELDES_GOSSIP_INTERVAL?", "rename it to SHIELDES_GOSSIP_INTERVAL", warning=True)]
    assert unknown_setting_lines(["SHIELDES_DATABSE_URL", "SHIELDES_LOGLEVEL"], KNOWN) == [
        "SHIELDES_DATABSE_URL is set but is no shieldes setting: it is ignored; did you mean SHIELDES_DATABASE_URL?",
        "SHIELDES_LOGLEVEL is set but is no shieldes setting: it is ignored; did you mean SHIELDES_LOG_LEVEL?"]


def test_a_name_close_to_none_says_where_the_settings_are() -> None:
    (finding,) = unknown_setting_findings(["SHIELDES_WHOLLY_UNRELATED_THING"], KNOWN)
    assert finding.detail.endswith("it is ignored; see docs/configuration.md for the settings")
    assert finding.fix == "remove it or correct its name" and finding.ok and finding.warning


def test_known_names_in_any_case_and_other_names_are_silent() -> None:
    # Settings reads names in any case; the project's own names outside Settings are known too
    names = ["SHIELDES_PORT", "shieldes_port", "Shieldes_Gossip_Interval", "SHIELDES_TEST_DATABASE_URL",
             "SHIELDES_ACTOR", "SHIELDESX", "OPENAI_API_KEY", "MY_SHIELDES_PORTT"]
    assert unknown_setting_findings(names, KNOWN) == []


def test_each_unknown_name_is_named_once_as_written() -> None:
    # the environment and .env may both set it; a lower-case spelling is named as written
    names = ["SHIELDES_PORTT", "SHIELDES_PORTT", "shieldes_admin_tokn", "SHIELDES_ADMIN_TOKN"]
    assert [(f.subject, f.fix) for f in unknown_setting_findings(names, KNOWN)] == [
        ("SHIELDES_ADMIN_TOKN", "rename it to SHIELDES_ADMIN_TOKEN"), ("SHIELDES_PORTT", "rename it to SHIELDES_PORT")]


def test_dotenv_names(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# a comment\nSHIELDES_GOSIP_INTERVAL=0.2\nexport SHIELDES_PORT = 9000\n\nnot a line\n"
                   "  SHIELDES_X_Y='a=b'\n")
    assert dotenv_names(env) == ["SHIELDES_GOSIP_INTERVAL", "SHIELDES_PORT", "SHIELDES_X_Y"]
    assert dotenv_names(tmp_path / "absent") == []


def test_every_shieldes_name_the_project_uses_is_known() -> None:
    """A SHIELDES_ name read in the code, the tests, the benches, CI or named in the docs is a
    setting or in settings_env.OUTSIDE_SETTINGS: else a node would warn about a name of the project."""
    files = [ROOT / "README.md", *(p for top in ("shieldes", "tests", "bench", ".ci", "docs")
                                   for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix not in (".pyc",))]
    used: dict[str, str] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for name in re.findall(r"\bSHIELDES_[A-Z0-9_]*[A-Z0-9]\b", text):
            used.setdefault(name, str(path.relative_to(ROOT)))
    unknown = {name: where for name, where in used.items() if name not in KNOWN and name not in NOT_VARIABLES}
    assert not unknown, f"add these to settings_env.OUTSIDE_SETTINGS (or make them settings): {unknown}"
    settings = {"SHIELDES_" + name.upper() for name in Settings.model_fields}
    assert not OUTSIDE_SETTINGS & settings, "a setting needs no entry in OUTSIDE_SETTINGS"
    stale = OUTSIDE_SETTINGS - set(used)
    assert not stale, f"no longer used anywhere: drop them from OUTSIDE_SETTINGS: {stale}"
