"""Every admin API answer, errors included, and the console's JSON answers are never cached, never
sniffed as a page and never framed: `Cache-Control: no-store`, `X-Content-Type-Options: nosniff`
and a CSP of `default-src 'none'; frame-ancestors 'none'` (an answer may echo a name or a value a
client chose, or hold a secret shown once)."""

from __future__ import annotations

import aiohttp

from shieldes import secrets
from shieldes.projections.shared_commands import CreateAdminToken
from tests.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc
from tests.integration.gateway_harness import harness

BOOT = "headers-bootstrap-token-0123456789abcdef"
WANT = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}


async def test_admin_answers_are_not_cached_sniffed_or_framed(database_url: str, idp: FakeOidc) -> None:
    async with harness(database_url, admin_token=BOOT, providers=False, oidc_issuer=idp.url,
                       oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET) as h:
        viewer = secrets.new_admin_token()
        await h.admin(CreateAdminToken(secrets.new_id("adm"), "vera", "viewer", secrets.hash_key(viewer),
                                       secrets.display_prefix(viewer)))
        await h.sync()
        seen: dict[str, tuple[int, dict[str, str]]] = {}
        async with aiohttp.ClientSession() as s:
            for name, method, path, token in [
                    ("ok", "GET", "/admin/v1/whoami", BOOT), ("refused", "GET", "/admin/v1/keys", "shd-adm-x"),
                    ("no role", "POST", "/admin/v1/teams", viewer),
                    ("bad query", "GET", "/admin/v1/keys?<b>x</b>=1", BOOT),
                    ("not found", "GET", "/admin/v1/keys/nope", BOOT),
                    ("sign-in options", "GET", "/ui/sign-in.json", None),
                    ("no hand-off", "POST", "/ui/oidc/session", None)]:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with s.request(method, h.base + path, headers=headers, json={"name": "t"}
                                     if method == "POST" and token else None) as r:
                    seen[name] = (r.status, {k: r.headers.get(k, "") for k in WANT})
    assert [status for status, _ in seen.values()] == [200, 401, 403, 400, 404, 200, 401], seen
    for name, (_, headers) in seen.items():
        assert headers == WANT, (name, headers)
