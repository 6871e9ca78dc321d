"""A browser's console sign-in through the fake OpenID provider (tests/fake_oidc.py), step by step
over real HTTP: the whole sign-in, or its hand-off cookie and the redeem apart (a replay, a sign-in
whose redeem meets a database outage)."""

from __future__ import annotations

from typing import Any

import aiohttp

from shieldes.gateway.admin.oidc import HANDOFF_COOKIE, HANDOFF_PATH


async def sign_in(base: str) -> tuple[int, str]:
    """Follow the browser's redirects by hand, then redeem the hand-off as the console page does;
    returns (200, the session token) or (status, body) of the step that refused."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(base + "/ui/oidc/login", allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            to_provider = r.headers["Location"]
        async with s.get(to_provider, allow_redirects=False) as r:
            assert r.status == 302
            back = r.headers["Location"]
        async with s.get(back, allow_redirects=False) as r:
            if r.status != 302:
                return r.status, await r.text()
            assert r.headers["Location"] == "/ui/#sso", r.headers["Location"]  # no credential in the URL
        async with s.post(base + HANDOFF_PATH) as r:
            body = await r.json()
            return r.status, body["session"] if r.status == 200 else str(body)


async def sso(base: str) -> dict[str, Any]:
    """A browser's SSO sign-in; the redeem's answer ({"session", "id_token"})."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(base + "/ui/oidc/login") as r:  # through the provider and back to /ui/#sso
            assert r.status == 200, await r.text()
        async with s.post(base + HANDOFF_PATH) as r:
            assert r.status == 200, await r.text()
            answer: dict[str, Any] = await r.json()
            return answer


async def handoff_cookie(base: str) -> str:
    """A browser's sign-in up to the callback (neither needs Postgres): its hand-off cookie (or a
    thief's copy of it)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(base + "/ui/oidc/login", allow_redirects=False) as r:
            to_provider = r.headers["Location"]
        async with s.get(to_provider, allow_redirects=False) as r:
            back = r.headers["Location"]
        async with s.get(back, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            return r.cookies[HANDOFF_COOKIE].value


async def redeem(base: str, cookie: str, retry_key: str | None = None) -> tuple[int, dict[str, Any]]:
    """The console page's redeem of the hand-off `cookie` (`retry_key`: the random Idempotency-Key
    the page sends with each try of one sign-in; None: a request without one): (status, answer)."""
    headers = {"Cookie": f"{HANDOFF_COOKIE}={cookie}"}
    if retry_key is not None:
        headers["Idempotency-Key"] = retry_key
    async with aiohttp.ClientSession() as s, s.post(base + HANDOFF_PATH, headers=headers) as r:
        return r.status, await r.json()
