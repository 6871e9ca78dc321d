"""The startup line that tells an operator where the admin API and console are, or how to turn them on."""

from __future__ import annotations

from shieldes.checks import admin_line


def test_off_says_what_turns_the_console_on() -> None:
    line = admin_line(False, 0, False, any_tokens=False)
    assert line.startswith("admin API and console: off;")
    assert "SHIELDES_ADMIN_TOKEN" in line and "shieldes admin-token create --name NAME --role admin" in line


def test_on_names_what_signs_in() -> None:
    assert admin_line(True, 2, True, any_tokens=True) == (
        "admin API and console: /admin/v1/ and /ui/, sign in with SHIELDES_ADMIN_TOKEN or 2 admin token(s) or "
        "single sign-on")
    assert admin_line(False, 0, False, any_tokens=True).endswith("sign in with no active token")
