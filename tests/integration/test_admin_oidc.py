"""Console sign-in with OIDC against a small provider over real HTTP (RS256 ID tokens, JWKS,
discovery): the role claim maps to a shieldes role, the session token works on the admin API, and
forged state, unknown users and tampered sessions are refused; the code is redeemed with a PKCE
verifier, so a provider that requires PKCE signs users in."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import aiohttp

from shieldes.gateway.admin.oidc import HANDOFF_COOKIE, HANDOFF_PATH
from tests.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc, s256
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness, wait_until
from tests.integration.sso_client import sign_in


async def test_oidc_sign_in_maps_the_role_claim(database_url: str, idp: FakeOidc) -> None:
    async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                       oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=operator,finance=auditor") as h:
        status, options = await AdminClient(h.base, None).get("/ui/sign-in.json")
        assert options["oidc"] is True

        status, session = await sign_in(h.base)
        assert status == 200 and session.startswith("shd-oidc-")
        assert idp.token_requests[-1]["redirect_uri"] == h.base + "/ui/oidc/callback"
        api = AdminClient(h.base, session)
        status, me = await api.get("/admin/v1/whoami")
        assert status == 200 and me == {**me, "name": "ana@example.com", "role": "operator", "kind": "oidc"}
        status, _ = await api.post("/admin/v1/keys", {"name": "from-sso"})
        assert status == 201
        assert h.sql("SELECT actor FROM audit_log WHERE type = 'virtual_key.created'") == [
            ("oidc:ana@example.com",)]
        assert (await api.post("/admin/v1/teams", {"name": "t"}))[0] == 403  # operator, not admin

        # a tampered session is refused
        assert (await AdminClient(h.base, session[:-2] + "xx").get("/admin/v1/whoami"))[0] == 401

        # a user whose claim maps to no role gets no session
        idp.user = {"sub": "u-2", "email": "bob@example.com", "roles": ["marketing"]}
        status, body = await sign_in(h.base)
        assert status == 403 and "oidc_no_role" in body

        # a callback with a forged state (no matching cookie) is refused
        async with aiohttp.ClientSession() as s, s.get(h.base + "/ui/oidc/callback?code=x&state=y",
                                                       allow_redirects=False) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "oidc_state_mismatch"

        # the login redirect carries what the provider needs
        async with aiohttp.ClientSession() as s, s.get(h.base + "/ui/oidc/login", allow_redirects=False) as r:
            q = parse_qs(urlparse(r.headers["Location"]).query)
            assert q["client_id"] == [CLIENT_ID] and q["response_type"] == ["code"] and q["nonce"][0]


async def test_oidc_sign_in_sends_a_pkce_challenge_and_redeems_the_code_with_its_verifier(database_url: str,
                                                                                          idp: FakeOidc) -> None:
    # the provider requires PKCE, as Okta, Entra or Keycloak can be set to
    async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                       oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=viewer") as h:
        status, session = await sign_in(h.base)
        assert status == 200 and session.startswith("shd-oidc-"), session
        first, second = await sign_in(h.base), await sign_in(h.base)
        assert first[0] == second[0] == 200
    challenges = [q.get("code_challenge") for q in idp.authorize_requests]
    verifiers = [t.get("code_verifier", "") for t in idp.token_requests]
    assert [q.get("code_challenge_method") for q in idp.authorize_requests] == ["S256"] * 3
    assert [s256(v) for v in verifiers] == challenges and len(set(verifiers)) == 3  # a fresh one each time
    assert all(43 <= len(v) <= 128 for v in verifiers)  # RFC 7636's bounds


async def test_the_state_cookie_is_secure_when_the_callback_is_https_behind_a_load_balancer(database_url: str,
                                                                                            idp: FakeOidc) -> None:
    """TLS ended at a load balancer: the node sees http, the browser uses the https callback."""
    async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                       oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=viewer",
                       oidc_redirect_url="https://console.example.com/ui/oidc/callback") as h, \
            aiohttp.ClientSession() as s, s.get(h.base + "/ui/oidc/login", allow_redirects=False) as r:
        cookie = r.headers["Set-Cookie"]
        assert r.status == 302 and "redirect_uri=https://console.example.com/" in r.headers["Location"]
    async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                       oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=viewer", providers=False) as h, \
            aiohttp.ClientSession() as s, s.get(h.base + "/ui/oidc/login", allow_redirects=False) as r:
        plain = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie, cookie
    assert "Secure" not in plain and "HttpOnly" in plain  # a plain-http node: the browser would drop it


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def test_a_refused_sign_in_is_a_page_in_words_for_a_browser(database_url: str) -> None:
    """Where the browser lands after the provider: not a JSON body, but what happened, what to do
    and a way back to the sign-in form, with the console's headers; the provider's text escaped."""
    idp = await FakeOidc().start()
    idp.user = {"sub": "u-3", "email": "eve@example.com", "roles": ["marketing"]}
    pages = []
    try:
        async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                           oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=admin") as h:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers=BROWSER) as s:
                async with s.get(h.base + "/ui/oidc/login") as r:  # follows the redirects, as a browser does
                    pages.append((r.status, r.headers, await r.text()))
                for query in ("error=access_denied%3Cscript%3Ealert(1)%3C/script%3E", "code=x&state=y"):
                    async with s.get(h.base + "/ui/oidc/callback?" + query) as r:
                        pages.append((r.status, r.headers, await r.text()))
            status, body = await sign_in(h.base)  # an API client still gets the JSON error
            assert status == 403 and '"code":"oidc_no_role"' in body.replace(" ", "")
            writer = h.node.request_log
            assert writer is not None
            await wait_until(lambda: writer.buffer.added >= 6, timeout=10)
            assert await writer.flush_all(10)
            # a refused sign-in is in the request log with its reason, the browser's page or not
            logged = h.sql("SELECT status, error_code FROM request_log WHERE route = '/ui/oidc/callback' "
                           "ORDER BY started_at")
    finally:
        await idp.stop()
    (no_role, headers, text), (refused, _, escaped), (stale, _, _) = pages
    assert no_role == 403 and headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in headers  # plain HTTP: HSTS there would be ignored (RFC 6797)
    assert "Sign-in failed" in text and "SHIELDES_OIDC_ROLE_MAP; ask an administrator" in text
    assert '<a class="button primary" href="/ui/">Back to sign-in</a>' in text and "oidc_no_role" in text
    assert refused == 401 and "<script>" not in escaped and "&lt;script&gt;alert(1)" in escaped
    assert stale == 400
    assert logged == [(403, "oidc_no_role"), (401, "oidc_refused"), (400, "oidc_state_mismatch"),
                      (403, "oidc_no_role")], logged


async def test_an_id_token_without_expiry_or_subject_is_refused(database_url: str) -> None:
    """Without `exp` the ID token would be taken however old; without `sub` the callback failed
    with a 500 (a KeyError) for a user with no email."""
    idp = await FakeOidc().start()
    seen = []
    try:
        async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                           oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=admin") as h:
            for drop, user in (({"exp"}, idp.user), ({"sub"}, {"roles": ["platform"]})):
                idp.drop_claims, idp.user = drop, user
                seen.append(await sign_in(h.base))
    finally:
        await idp.stop()
    for status, body in seen:
        assert status == 401 and "oidc_invalid_token" in body and "start again at /ui/" in body, body
    assert "exp" in seen[0][1] and "sub" in seen[1][1]


async def test_an_unverified_email_does_not_name_the_actor(database_url: str, idp: FakeOidc) -> None:
    """A provider that lets a user type any email marks it email_verified: false; the audit log
    then names the user by subject, so nobody signs changes with a colleague's address."""
    async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                       oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=operator") as h:
        names = []
        for verified in (False, True):
            idp.user = {"sub": "u-77", "email": "ceo@example.com", "email_verified": verified,
                        "roles": ["platform"]}
            status, session = await sign_in(h.base)
            assert status == 200, session
            names.append((await AdminClient(h.base, session).get("/admin/v1/whoami"))[1]["name"])
    assert names == ["u-77", "ceo@example.com"]


async def test_the_session_reaches_only_the_browser_that_signed_in(database_url: str, idp: FakeOidc) -> None:
    """Login CSRF: the callback put the session in the URL (/ui/#session=...), so a link with the
    attacker's session signed a victim in as the attacker. Now the session is handed over in an
    HttpOnly cookie of the browser that passed the state check, redeemed once by a same-origin POST."""
    async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                       oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=admin") as h, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(h.base + "/ui/oidc/login", allow_redirects=False) as r:
            to_provider = r.headers["Location"]
        async with s.get(to_provider, allow_redirects=False) as r:
            back = r.headers["Location"]
        async with s.get(back, allow_redirects=False) as r:
            location, cookie = r.headers["Location"], r.headers.getall("Set-Cookie")
            handoff = next(c for c in cookie if c.startswith(HANDOFF_COOKIE + "="))
        # another browser (no cookie) and a cross-site page get nothing
        async with aiohttp.ClientSession() as other, other.post(h.base + HANDOFF_PATH) as r:
            stranger = (r.status, (await r.json())["error"]["code"])
        async with s.post(h.base + HANDOFF_PATH, headers={"Sec-Fetch-Site": "cross-site"}) as r:
            cross = (r.status, (await r.json())["error"]["code"])
        async with s.post(h.base + HANDOFF_PATH) as r:
            first = (r.status, await r.json(), r.headers.get("Cache-Control"))
        async with s.post(h.base + HANDOFF_PATH) as r:  # erased as it was read
            again = (r.status, (await r.json())["error"]["code"])
    assert location == "/ui/#sso" and "shd-oidc-" not in location
    assert "HttpOnly" in handoff and f"Path={HANDOFF_PATH}" in handoff and "SameSite=Lax" in handoff, handoff
    assert stranger == (401, "oidc_no_sign_in") and cross == (403, "oidc_cross_site")
    assert first[0] == 200 and first[1]["session"].startswith("shd-oidc-") and first[2] == "no-store"
    assert again == (401, "oidc_no_sign_in")


async def test_a_provider_that_does_not_answer_is_a_502_saying_so(database_url: str) -> None:
    """The provider accepts the connection and never answers (a hung IdP, a black-holed network):
    the sign-in ends within its timeout with a 502 naming the provider and what to check, a page in
    words for a browser; not a 500."""
    import asyncio

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the node gives up and closes
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with harness(database_url, oidc_issuer=f"http://127.0.0.1:{port}", oidc_client_id=CLIENT_ID,
                           oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=admin") as h, \
                aiohttp.ClientSession() as s:
            assert h.node.admin is not None and h.node.admin.oidc is not None
            h.node.admin.oidc.timeout = 1.0  # the product's 10 s, twice per test, was all this test's time
            started = time.monotonic()
            async with s.get(h.base + "/ui/oidc/login", allow_redirects=False) as r:
                body = await r.json()
                assert r.status == 502 and "OIDC provider" in body["error"]["message"], body
                assert "SHIELDES_OIDC_ISSUER" in body["error"]["message"], body
            async with s.get(h.base + "/ui/oidc/login", allow_redirects=False, headers={"Accept": "text/html"}) as r:
                assert r.status == 502 and "Sign-in failed" in await r.text()
            assert time.monotonic() - started < 8, "the sign-in waited past its timeout"  # two timeouts, slack for load
    finally:
        server.close()
