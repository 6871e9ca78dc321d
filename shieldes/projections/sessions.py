"""Console sessions from OIDC sign-in, in the shared log: a sign-in appends `oidc_session.started`,
signing out or a revocation `oidc_session.ended`, and every node refuses an ended session's token as
soon as it applies the event (the path of an admin token's revocation). Pure: times come in the
commands and events, never from a clock."""

from __future__ import annotations

from dataclasses import dataclass, replace

from shieldes.errors import CommandRejected, SubjectNotFound
from shieldes.events.catalog import Event, OidcSessionEnded, OidcSessionStarted
from shieldes.projections.state import ConfigState, OidcSession
from shieldes.roles import ROLES

REASONS = ("signed_out", "revoked")
PRUNE_AFTER = 3600.0  # seconds past its expiry a session is still held (clock skew between nodes)


@dataclass(frozen=True)
class StartSession:
    id: str
    user: str
    role: str
    at: float
    expires_at: float


@dataclass(frozen=True)
class EndSession:
    """End one session: its user signing out, or an admin revoking it."""

    id: str
    reason: str
    at: float


@dataclass(frozen=True)
class EndUserSessions:
    """Revoke every session of `user` running at `at`."""

    user: str
    at: float


SessionCommand = StartSession | EndSession | EndUserSessions


def apply_session(state: ConfigState, event: OidcSessionStarted | OidcSessionEnded) -> ConfigState:
    if isinstance(event, OidcSessionStarted):
        # sessions past their expiry are dropped here: their tokens are refused on their own, and
        # the map holds only the sessions that could still be used (the margin: this event's time
        # is another node's clock, and an ended session must stay ended while any node takes it)
        kept = {i: s for i, s in state.oidc_sessions.items() if s.expires_at + PRUNE_AFTER > event.at}
        kept[event.id] = OidcSession(event.id, event.name, event.role, event.at, event.expires_at)
        return replace(state, oidc_sessions=kept)
    old = state.oidc_sessions.get(event.id)
    if old is None:  # expired and dropped already
        return state
    return replace(state, oidc_sessions={**state.oidc_sessions,
                                         event.id: replace(old, ended=event.reason, ended_at=event.at)})


def _running(state: ConfigState, session_id: str, at: float) -> OidcSession:
    session = state.oidc_sessions.get(session_id)
    if session is None or session.status(at) == "expired":
        raise SubjectNotFound(f"no console session with id {session_id!r} is running (it expired or never existed); "
                              "see `shieldes session list`", code="session_not_found")
    if session.ended:
        raise CommandRejected(f"console session {session_id!r} of {session.user} has ended already ({session.ended})")
    return session


def decide_session(state: ConfigState, command: SessionCommand) -> list[Event]:
    match command:
        case StartSession():
            if command.role not in ROLES:
                raise CommandRejected(f"unknown role {command.role!r}: use one of {', '.join(ROLES)}")
            if command.id in state.oidc_sessions:
                raise CommandRejected(f"console session {command.id!r} was started already (its sign-in was finished); "
                                      "sign in again")
            return [OidcSessionStarted(command.id, command.user, command.role, command.at, command.expires_at)]
        case EndSession():
            if command.reason not in REASONS:
                raise CommandRejected(f"unknown reason {command.reason!r}: use one of {', '.join(REASONS)}")
            session = _running(state, command.id, command.at)
            return [OidcSessionEnded(session.id, session.user, command.reason, command.at)]
        case EndUserSessions():
            running = sorted((s for s in state.oidc_sessions.values()
                              if s.user == command.user and s.status(command.at) == "active"),
                             key=lambda s: s.started_at)
            if not running:
                raise SubjectNotFound(f"{command.user!r} has no console session running; see `shieldes session list` "
                                      "for the users signed in", code="session_not_found")
            return [OidcSessionEnded(s.id, s.user, "revoked", command.at) for s in running]
    raise CommandRejected(f"unknown command {type(command).__name__}")
