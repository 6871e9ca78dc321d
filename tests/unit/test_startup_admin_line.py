"""The startup lines: where the admin API and console are, or how to turn them on; what is missing."""

from __future__ import annotations

from shieldes.checks import admin_line, startup_report, weak_secret_lines
from shieldes.projections.config import apply_config
from shieldes.projections.shared_commands import AddProvider, decide_shared
from shieldes.projections.state import ConfigState
from shieldes.secrets import Keyring


def test_off_says_what_turns_the_console_on() -> None:
    line = admin_line(False, 0, False, any_tokens=False)
    assert line.startswith("admin API and console: off;")
    assert "SHIELDES_ADMIN_TOKEN" in line and "shieldes admin-token create --name NAME --role admin" in line


def test_on_names_what_signs_in() -> None:
    assert admin_line(True, 2, True, any_tokens=True) == (
        "admin API and console: /admin/v1/ and /ui/, sign in with SHIELDES_ADMIN_TOKEN or 2 admin token(s) or "
        "single sign-on")
    assert admin_line(False, 0, False, any_tokens=True).endswith("sign in with no active token")


def test_an_unpriced_model_says_budgeted_keys_are_refused_it() -> None:
    """Budgets fail closed: the line must not say only that usage counts $0 (a budgeted key's
    request for it is refused), nor that budgets cannot limit it."""
    state = ConfigState()
    for event in decide_shared(state, AddProvider("local", "openai", "http://127.0.0.1:8000/v1", None, ("house",))):
        state = apply_config(state, event)
    _, missing = startup_report(state, keyring=Keyring(None), environ={}, priced=lambda m: False, peers=0, gossip=False)
    [line] = [m for m in missing if m.startswith("no price for house")]
    assert "refused" in line and "403 model_not_priced" in line and "SHIELDES_ALLOW_UNPRICED" in line


def test_a_short_bootstrap_token_or_client_secret_is_named_with_what_to_use() -> None:
    """Failed admin sign-ins are only slowed down (and a client secret is guessed offline), so a
    short operator-chosen secret is a warning at start."""
    [token, secret] = weak_secret_lines("admin", "s" * 31)
    assert token.startswith("SHIELDES_ADMIN_TOKEN is 5 characters: it can be guessed by anyone who can reach")
    assert secret.startswith("SHIELDES_OIDC_CLIENT_SECRET is 31 characters") and "offline" in secret
    assert all("at least 32 random characters" in line and "openssl rand" in line for line in (token, secret))
    assert weak_secret_lines("t" * 32, None) == [] and weak_secret_lines(None, "s" * 40) == []
