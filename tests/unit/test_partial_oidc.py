"""SSO needs all three OIDC settings; a node given one or two of them says at startup that SSO is
off and which are missing, instead of leaving the "Sign in with SSO" button out without a word."""

from __future__ import annotations

from shieldes.checks import partial_oidc_lines


def test_all_or_none_is_silent() -> None:
    assert partial_oidc_lines(None, None, None) == []
    assert partial_oidc_lines("https://id.example", "console", "s" * 40) == []


def test_one_set_names_the_two_missing() -> None:
    [line] = partial_oidc_lines("https://id.example", None, "")
    assert line.startswith("SSO sign-in is off: SHIELDES_OIDC_ISSUER is set but SHIELDES_OIDC_CLIENT_ID and "
                           "SHIELDES_OIDC_CLIENT_SECRET are not; set all three on every node")


def test_two_set_names_the_one_missing() -> None:
    [line] = partial_oidc_lines(None, "console", "secret")
    assert "SHIELDES_OIDC_CLIENT_ID and SHIELDES_OIDC_CLIENT_SECRET are set but SHIELDES_OIDC_ISSUER is not" in line
