"""Console sessions from SSO time out when unused (SHIELDES_OIDC_IDLE_SECONDS) on every node: each
request the user makes is answered with the token renewed, a token left unused past its idle
deadline is refused by any node with 401 `session_idle`, and the live pages' own refreshes
(`X-Shieldes-Activity: background`) renew nothing. Signing out sends the browser to the provider's
end_session_endpoint with the ID token as hint and back to /ui/ (RP-initiated logout)."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp

from tests.fake_oidc import CLIENT_ID, FakeOidc
from tests.integration.gateway_harness import harness
from tests.integration.sso_client import sso

IDLE = 1.0


async def whoami(base: str, token: str, background: bool = False) -> tuple[int, str | None, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    if background:
        headers["X-Shieldes-Activity"] = "background"
    async with aiohttp.ClientSession() as s, s.get(base + "/admin/v1/whoami", headers=headers) as r:
        return r.status, r.headers.get("X-Shieldes-Session"), await r.json()


async def test_an_unused_session_times_out_on_every_node_and_activity_keeps_it(database_url: str,
                                                                              idp: FakeOidc) -> None:
    oidc = idp.node_settings(oidc_role_map="platform=operator", oidc_idle_seconds=IDLE)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(harness(database_url, **oidc))
        b = await stack.enter_async_context(harness(database_url, providers=False, **oidc))
        first = (await sso(a.base))["session"]
        polled = (await sso(a.base))["session"]
        # the user works, on one node and the other, for three idle timeouts: the token renewed
        # at each answer carries on; the first token and one only polled in the background time out
        token, began, renewed_times, polled_out = first, time.monotonic(), 0, False
        while time.monotonic() - began < 3 * IDLE:
            status, renewed, _ = await whoami(a.base if renewed_times % 2 else b.base, token)
            assert status == 200 and renewed, (status, renewed)
            token, renewed_times = renewed, renewed_times + 1
            status, not_renewed, _ = await whoami(a.base, polled, background=True)
            assert not_renewed is None
            if status == 401:
                polled_out = True
            await asyncio.sleep(IDLE / 5)
        assert polled_out
        for base in (a.base, b.base):
            status, _, body = await whoami(base, first)
            assert status == 401 and body["error"]["code"] == "session_idle", body
            assert "SHIELDES_OIDC_IDLE_SECONDS" in body["error"]["message"] and "sign in again" in \
                body["error"]["message"]
            assert (await whoami(base, token))[0] == 200


async def test_sign_out_ends_the_session_at_the_provider_too(database_url: str, idp: FakeOidc) -> None:
    async with harness(database_url, **idp.node_settings(oidc_role_map="platform=operator")) as h:
        idp.post_logout_uris = {h.base + "/ui/"}
        signed_in = await sso(h.base)
        assert signed_in["id_token"].count(".") == 2
        async with aiohttp.ClientSession() as s:
            async with s.post(h.base + "/admin/v1/sign-out", json={"id_token_hint": signed_in["id_token"]},
                              headers={"Authorization": f"Bearer {signed_in['session']}"}) as r:
                out = await r.json()
            assert r.status == 200 and out["signed_out"] is True, out
            to_provider = urlparse(out["logout_url"])
            assert out["logout_url"].startswith(idp.url + "/logout?")
            assert parse_qs(to_provider.query) == {"id_token_hint": [signed_in["id_token"]],
                                                  "client_id": [CLIENT_ID],
                                                  "post_logout_redirect_uri": [h.base + "/ui/"]}
            async with s.get(out["logout_url"], allow_redirects=False) as r:  # the browser goes there
                assert r.status == 302 and r.headers["Location"] == h.base + "/ui/", await r.text()
        assert (await whoami(h.base, signed_in["session"]))[0] == 401
    # a provider without an end_session_endpoint: the session ends here, no URL to follow
    idp.offers_logout = False
    async with harness(database_url, providers=False, **idp.node_settings(oidc_role_map="platform=operator")) as h:
        signed_in = await sso(h.base)
        assert "id_token" not in signed_in  # nothing to hint with
        async with aiohttp.ClientSession() as s, s.post(
                h.base + "/admin/v1/sign-out", headers={"Authorization": f"Bearer {signed_in['session']}"}) as r:
            out = await r.json()
        assert r.status == 200 and out["signed_out"] is True and "logout_url" not in out, out
