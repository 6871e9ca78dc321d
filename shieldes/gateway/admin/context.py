"""What admin handlers need from their node, handed over explicitly (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from shieldes.client_address import Network
from shieldes.dbwait import DbWait
from shieldes.gateway.admin.orders import NameOrders
from shieldes.gateway.admin.sign_in_limit import SignInLimit
from shieldes.settings import Settings

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from shieldes.cluster.runtime import ClusterRuntime
    from shieldes.gateway.admin.oidc import OidcLogin
    from shieldes.gateway.service import Gateway
    from shieldes.projections.projector import Projector


@dataclass
class AdminContext:
    settings: Settings
    node_id: str
    projector: Projector
    gateway: Gateway
    pool: AsyncConnectionPool[Any] | None
    readiness: Callable[[], tuple[bool, dict[str, Any]]]
    db_wait: DbWait  # bounds a config write's wait on Postgres (the node's, as for conversations)
    db_read_wait: DbWait  # bounds an admin read's wait on Postgres (Route.reads_db)
    database_url: str = ""
    cluster: ClusterRuntime | None = None
    oidc: OidcLogin | None = None
    orders: NameOrders = field(default_factory=NameOrders)  # list routes' sorted names
    sign_in: SignInLimit = field(default_factory=lambda: SignInLimit(10, 100))  # failed sign-ins (auth.py)
    trusted_proxies: tuple[Network, ...] = ()  # whose X-Forwarded-For names the client


ADMIN: web.AppKey[AdminContext] = web.AppKey("admin", AdminContext)
