"""A refused role is told which roles may do it: the admin API names them from the role table, and
the CLI in remote mode (which imports no shieldes module beyond its own) keeps its own copy."""

from __future__ import annotations

from shieldes.cli.remote import _ROLES_FOR_SCOPE
from shieldes.roles import ADMIN, KEYS_WRITE, READ, roles_granting


def test_the_roles_named_for_a_scope() -> None:
    assert roles_granting(KEYS_WRITE) == "operator or admin"
    assert roles_granting(ADMIN) == "admin"
    assert roles_granting(READ) == "viewer, operator or admin"


def test_the_cli_names_the_same_roles_as_the_api() -> None:
    """An equivalence test: the two must not drift apart."""
    assert {scope: roles_granting(scope) for scope in _ROLES_FOR_SCOPE} == _ROLES_FOR_SCOPE


def test_a_refused_route_reads_as_what_the_role_may_not_do() -> None:
    """The 403 says `the ROLE role may not <the route's summary>`: each summary a role can be refused
    starts with what the call does."""
    from shieldes.gateway.admin import ROUTES
    from shieldes.roles import ROLES, allows

    verbs = {"List", "Show", "Create", "Change", "Revoke", "Give", "Set", "Remove", "Add", "Register", "End",
             "Write"}
    refusable = {r.summary for r in ROUTES if not all(allows(role, r.scope) for role in ROLES)}
    assert refusable and not {s for s in refusable if s.split(" ", 1)[0] not in verbs}
