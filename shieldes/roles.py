"""Admin roles and what each may do. Pure data and one pure check; the admin API asks it per route.

A route needs one scope. Roles grant scopes:
- admin: everything (providers, pricing, teams, admin tokens, snapshots included)
- operator: keys and budgets (create, update, revoke, rotate), and read everything a viewer reads
- viewer: read everything (no response ever carries a secret: key and token secrets are shown once)
  except captured request/response bodies, which only admin reads (payloads may hold personal data)
- auditor: the audit trail (audit log, config history) and usage only
"""

from __future__ import annotations

from typing import Final

ROLES: Final = ("admin", "operator", "viewer", "auditor")

READ: Final = "read"  # config, keys, providers, cluster status, request log
AUDIT: Final = "audit"  # audit log, config at a point, config diff
USAGE: Final = "usage"  # usage figures and charts
KEYS_WRITE: Final = "keys:write"  # keys and budgets
ADMIN: Final = "admin"  # providers, pricing, teams, admin tokens, snapshots
ANY: Final = "any"  # any authenticated principal (whoami)
BODIES: Final = "requests:bodies"  # captured request/response bodies in the request log
SCOPES: Final = (ANY, READ, AUDIT, USAGE, KEYS_WRITE, ADMIN, BODIES)

GRANTS: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset(SCOPES),
    "operator": frozenset({ANY, READ, AUDIT, USAGE, KEYS_WRITE}),
    "viewer": frozenset({ANY, READ, AUDIT, USAGE}),
    "auditor": frozenset({ANY, AUDIT, USAGE}),
}


def allows(role: str, scope: str) -> bool:
    return scope in GRANTS.get(role, frozenset())


def roles_granting(scope: str) -> str:
    """The roles that grant `scope`, least powerful first, as a refusal names them to the caller:
    'operator or admin', 'auditor, viewer, operator or admin'."""
    roles = [role for role in reversed(ROLES) if allows(role, scope)]
    return " or ".join(filter(None, (", ".join(roles[:-1]), roles[-1])))


def scopes_of(role: str) -> list[str]:
    return sorted(GRANTS.get(role, frozenset()))


def parse_role_map(text: str) -> dict[str, str]:
    """'platform=admin, sre=operator' -> {'platform': 'admin', 'sre': 'operator'}."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        value, sep, role = item.partition("=")
        if not sep or role.strip() not in ROLES:
            raise ValueError(f"bad SHIELDES_OIDC_ROLE_MAP entry {item.strip()!r}: write CLAIM_VALUE=ROLE with a role "
                             f"among {', '.join(ROLES)}")
        out[value.strip()] = role.strip()
    return out
