"""Console sign-in and admin tokens while Postgres is unreachable (TCP proxies in front of it are
cut), and after it returns. Every node cut: a signed-in console user and an admin token keep
working from memory; a sign-in, a sign-out and a revocation, which must be in the log to hold, are
refused with a 503 in the admin API's shape saying what to do, never half done: the sign-in's
hand-off stays redeemable and works once Postgres is back, the session stays valid until its sign-
out is acknowledged. One node cut alone while another acknowledges a revocation: the cut-off node,
which cannot read it, accepts no revocable credential until it reads the log again (it hears from
gossip that the log moved on), so an acknowledged revocation holds on every node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from shieldes import secrets
from shieldes.config_writer import execute
from shieldes.projections.shared_commands import CreateAdminToken
from tests.fake_oidc import FakeOidc
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import wait_until
from tests.integration.sso_client import handoff_cookie, redeem, sign_in
from tests.resilience.support import TcpProxy, in_process_cluster

BOOT = "outage-bootstrap-token-0123456789abcdef"


def unavailable(answer: tuple[int, Any], *words: str) -> None:
    """A 503 in the admin API's error shape that says what to do."""
    status, body = answer
    assert status == 503, answer
    error = body["error"]
    assert error["code"] in ("database_unavailable", "credentials_unconfirmed") and error["type"], body
    assert all(w in error["message"] for w in words), body


async def eventually(call: Callable[[], Awaitable[tuple[int, Any]]], status: int, timeout: float = 15,
                     written_before: Callable[[tuple[int, Any]], bool] | None = None,
                     unavailable_only: bool = False) -> Any:
    """`call` again until it answers `status` (a pooled connection the cut broke answers 503 once).
    `written_before`: the answer that says a try answered 503 was written after all (its wait ran
    out on the COMMIT's answer), taken as done only right after a 503. `unavailable_only`: any
    answer but `status` or a 503 fails at once."""
    seen: list[tuple[int, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(await call())
        if seen[-1][0] == status:
            return seen[-1][1]
        assert not unavailable_only or seen[-1][0] == 503, seen[-1]
        if written_before is not None and len(seen) > 1 and seen[-2][0] == 503 and written_before(seen[-1]):
            return None
        await asyncio.sleep(0.1)
    raise AssertionError(f"never {status}: {seen[-3:]}")


async def degraded(base: str) -> bool:
    async with aiohttp.ClientSession() as s, s.get(base + "/ready") as r:
        return bool((await r.json())["degraded"])


async def test_sign_in_sign_out_and_revocations_with_postgres_cut(database_url: str, idp: FakeOidc) -> None:
    first, second = await TcpProxy(database_url).start(), await TcpProxy(database_url).start()
    settings = idp.node_settings(oidc_role_map="platform=admin", admin_token=BOOT, db_request_timeout=2.0,
                                 db_admin_read_timeout=2.0, node0={"database_url": first.url_for(database_url)},
                                 node1={"database_url": second.url_for(database_url)})
    try:
        async with in_process_cluster(database_url, 2, **settings) as c:
            a, b = c.base(0), c.base(1)
            ops_secret = secrets.new_admin_token()
            written = await execute(c.store, CreateAdminToken(secrets.new_id("adm"), "ops", "admin",
                                                              secrets.hash_key(ops_secret),
                                                              secrets.display_prefix(ops_secret)), actor="test")
            for n in c.nodes:
                assert n.projector is not None and await n.projector.wait_for(written[-1].position, 10)
            status, ana = await sign_in(a)
            assert status == 200, ana
            status, bob = await sign_in(a)
            assert status == 200, bob
            ana_on = {base: AdminClient(base, ana) for base in (a, b)}
            boot = AdminClient(a, BOOT)
            bob_id = (await AdminClient(a, bob).get("/admin/v1/whoami"))[1]["session"]
            await wait_until(lambda: all(bob_id in n.projector.config.oidc_sessions for n in c.nodes
                                         if n.projector is not None))

            # --- every node cut from Postgres ----------------------------------------------------
            first.cut()
            second.cut()
            await wait_until(lambda: False not in [c.nodes[0].readiness()[1]["degraded"],
                                                   c.nodes[1].readiness()[1]["degraded"]], timeout=15)
            for base in (a, b):  # a signed-in console and a token work from memory
                assert (await ana_on[base].get("/admin/v1/whoami"))[0] == 200
                assert (await ana_on[base].get("/admin/v1/keys"))[0] == 200
                assert (await AdminClient(base, ops_secret).get("/admin/v1/whoami"))[0] == 200
            unavailable(await ana_on[a].get("/admin/v1/usage"), "retry")  # a read of Postgres
            cookie = await handoff_cookie(b)  # the provider's part of a sign-in needs no database
            page_key = secrets.new_id("try")  # the page's key for each try of this sign-in
            unavailable(await redeem(b, cookie, page_key), "sign in again")
            unavailable(await ana_on[a].post("/admin/v1/sign-out"))  # not acknowledged: not ended
            assert (await ana_on[b].get("/admin/v1/whoami"))[0] == 200
            unavailable(await boot.post(f"/admin/v1/sessions/{bob_id}/revoke"))
            unavailable(await boot.post("/admin/v1/admin-tokens/ops/revoke"))

            # --- Postgres back: the same hand-off, the sign-out and the revocations go through -----
            first.restore()
            second.restore()
            signed_in = await eventually(lambda: redeem(b, cookie, page_key), 200)
            assert signed_in["session"].startswith("shd-oidc-")
            await eventually(lambda: redeem(a, cookie), 401, unavailable_only=True)  # once only (A may still reconnect)
            out = await eventually(lambda: ana_on[a].post("/admin/v1/sign-out"), 200,
                                   written_before=lambda answer: answer[0] == 401)  # the session ended
            assert out is None or out["signed_out"] is True
            await eventually(lambda: boot.post(f"/admin/v1/sessions/{bob_id}/revoke"), 200,
                             written_before=lambda answer: "ended already (revoked)" in str(answer[1]))
            for base in (a, b):
                await eventually(lambda base=base: ana_on[base].get("/admin/v1/whoami"), 401, timeout=5)
                await eventually(lambda base=base: AdminClient(base, bob).get("/admin/v1/whoami"), 401, timeout=5)
            await wait_until(lambda: not any(n.readiness()[1]["degraded"] for n in c.nodes), timeout=15)

            # --- node B cut alone; node A acknowledges a revocation B cannot read -----------------
            second.cut()
            await wait_until(lambda: c.nodes[1].readiness()[1]["degraded"], timeout=15)
            ops_b = AdminClient(b, ops_secret)
            assert (await ops_b.get("/admin/v1/whoami"))[0] == 200
            status, revoked = await boot.post("/admin/v1/admin-tokens/ops/revoke")
            assert status == 200, revoked
            assert c.nodes[1].projector is not None and c.nodes[0].projector is not None
            head = c.nodes[0].projector.position
            await wait_until(lambda: c.nodes[1].projector.known_head >= head, timeout=10)  # told by gossip
            answer = await ops_b.get("/admin/v1/whoami")
            unavailable(answer, "use another node")
            assert answer[1]["error"]["code"] == "credentials_unconfirmed"
            assert (await AdminClient(a, ops_secret).get("/admin/v1/whoami"))[0] == 401
            assert (await AdminClient(b, BOOT).get("/admin/v1/whoami"))[0] == 200  # not revocable in the log
            second.restore()
            await eventually(lambda: ops_b.get("/admin/v1/whoami"), 401)  # B read the revocation
    finally:
        await first.stop()
        await second.stop()
