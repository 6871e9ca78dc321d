"""Console sessions in the config fold: started, ended (signed out, revoked one or all of a user),
dropped once expired, and kept across a snapshot, so a node started from one still refuses an
ended session."""

from __future__ import annotations

import pytest

from shieldes.errors import CommandRejected, SubjectNotFound
from shieldes.events.catalog import OidcSessionEnded, OidcSessionStarted
from shieldes.projections.commands import decide
from shieldes.projections.config import apply_config
from shieldes.projections.sessions import EndSession, EndUserSessions, StartSession
from shieldes.projections.state import ConfigState
from shieldes.snapshots.codec import config_from_plain, config_to_plain


def run(state: ConfigState, command: object) -> ConfigState:
    for event in decide(state, command):  # type: ignore[arg-type]
        state = apply_config(state, event)
    return state


def test_sessions_start_end_and_expire() -> None:
    state = run(ConfigState(), StartSession("s1", "ana@example.com", "admin", 100.0, 1000.0))
    state = run(state, StartSession("s2", "ana@example.com", "admin", 110.0, 1010.0))
    state = run(state, StartSession("s3", "bob@example.com", "viewer", 120.0, 130.0))
    state = run(state, EndSession("s1", "signed_out", 200.0))
    assert [(s.id, s.status(200.0)) for s in state.oidc_sessions.values()] == [
        ("s1", "signed_out"), ("s2", "active"), ("s3", "expired")]
    with pytest.raises(CommandRejected, match="ended already"):
        decide(state, EndSession("s1", "revoked", 201.0))
    with pytest.raises(SubjectNotFound, match="expired or never existed"):
        decide(state, EndSession("s3", "revoked", 201.0))
    [ended] = decide(state, EndUserSessions("ana@example.com", 300.0))
    assert ended == OidcSessionEnded("s2", "ana@example.com", "revoked", 300.0)
    with pytest.raises(SubjectNotFound, match="no console session running"):
        decide(state, EndUserSessions("bob@example.com", 300.0))
    # a later sign-in drops what has expired: the map holds only sessions that could be used
    state = apply_config(state, OidcSessionStarted("s4", "eve@example.com", "auditor", 4500.0, 9000.0))
    # held for an hour past their expiry (another node's clock may be behind): s3 (expired at 130) goes
    assert list(state.oidc_sessions) == ["s1", "s2", "s4"]
    state = apply_config(state, OidcSessionStarted("s5", "eve@example.com", "auditor", 4700.0, 9000.0))
    assert list(state.oidc_sessions) == ["s4", "s5"]
    # an end whose session was dropped changes nothing
    assert apply_config(state, OidcSessionEnded("s1", "ana@example.com", "revoked", 4701.0)) == state


def test_an_ended_session_stays_ended_through_a_snapshot() -> None:
    state = run(ConfigState(), StartSession("s1", "ana@example.com", "operator", 100.0, 1000.0))
    state = run(state, EndSession("s1", "revoked", 150.0))
    back = config_from_plain(config_to_plain(state))
    assert back.oidc_sessions == state.oidc_sessions and back.oidc_sessions["s1"].ended == "revoked"
    assert config_from_plain({k: v for k, v in config_to_plain(state).items() if k != "oidc_sessions"}
                             ).oidc_sessions == {}  # a snapshot written before sessions were logged
