"""Admin tokens and roles, pure: decide refuses bad commands, the fold keeps only active hashes,
snapshots round-trip them (and older snapshots without them still load), role checks and OIDC
claim mapping."""

from __future__ import annotations

import pytest

from shieldes.errors import CommandRejected
from shieldes.gateway.admin.oidc import role_for
from shieldes.projections.commands import decide
from shieldes.projections.config import apply_config
from shieldes.projections.shared_commands import CreateAdminToken, RevokeAdminToken
from shieldes.projections.state import ConfigState
from shieldes.roles import allows, parse_role_map
from shieldes.snapshots.codec import config_from_plain, config_to_plain


def fold(state: ConfigState, *commands: object) -> ConfigState:
    for c in commands:
        for e in decide(state, c):  # type: ignore[arg-type]
            state = apply_config(state, e)
    return state


def test_tokens_are_created_revoked_and_survive_a_snapshot() -> None:
    s = fold(ConfigState(), CreateAdminToken("adm_1", "ci", "operator", "h1", "shd-adm-abcd"),
             CreateAdminToken("adm_2", "dash", "viewer", "h2", "shd-adm-efgh"))
    assert s.admin_token_by_hash("h1").name == "ci"  # type: ignore[union-attr]
    with pytest.raises(CommandRejected, match="already exists"):
        decide(s, CreateAdminToken("adm_3", "ci", "admin", "h3", "p"))
    with pytest.raises(CommandRejected, match="unknown role"):
        decide(s, CreateAdminToken("adm_3", "x", "root", "h3", "p"))
    with pytest.raises(CommandRejected, match="invalid admin token name"):
        decide(s, CreateAdminToken("adm_3", "bad name", "admin", "h3", "p"))
    s = fold(s, RevokeAdminToken("ci"))
    assert s.admin_token_by_hash("h1") is None and s.admin_tokens["adm_1"].revoked
    with pytest.raises(CommandRejected, match="already revoked"):
        decide(s, RevokeAdminToken("adm_1"))
    with pytest.raises(CommandRejected, match="no admin token"):
        decide(s, RevokeAdminToken("nobody"))

    plain = config_to_plain(s)
    assert config_from_plain(plain) == s
    old = {k: v for k, v in plain.items() if k != "admin_tokens"}  # a snapshot from before admin tokens
    assert config_from_plain(old).admin_tokens == {}


def test_roles_and_oidc_claim_mapping() -> None:
    assert allows("operator", "keys:write") and not allows("operator", "admin")
    assert allows("viewer", "read") and not allows("viewer", "keys:write")
    assert allows("auditor", "audit") and allows("auditor", "usage") and not allows("auditor", "read")
    assert not allows("nobody", "any")
    m = parse_role_map("platform=admin, sre=operator")
    assert role_for(["sre", "platform"], m) == "admin"  # the most powerful wins
    assert role_for("sre", m) == "operator" and role_for(["viewer"], m) == "viewer"
    assert role_for(["marketing"], m) is None and role_for(None, m) is None and role_for(42, m) is None
    with pytest.raises(ValueError, match="SHIELDES_OIDC_ROLE_MAP"):
        parse_role_map("platform=root")


def test_an_expiring_token_is_unusable_after_its_expiry_and_keeps_it_through_a_snapshot() -> None:
    state = ConfigState()
    for cmd in (CreateAdminToken("adm_1", "ci", "operator", "h1", "shd-adm-a", expires_at=1000.0),
                CreateAdminToken("adm_2", "ops", "admin", "h2", "shd-adm-b")):
        for event in decide(state, cmd):
            state = apply_config(state, event)
    ci, ops = state.admin_tokens["adm_1"], state.admin_tokens["adm_2"]
    assert ci.usable(999.0) and not ci.usable(1000.0) and ops.usable(1e12)
    back = config_from_plain(config_to_plain(state))
    assert back.admin_tokens == state.admin_tokens
    assert "expires_at" not in config_to_plain(state)["admin_tokens"]["adm_2"]  # as before for a token without
