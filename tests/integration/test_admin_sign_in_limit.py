"""Failed sign-ins to the admin API are bounded per client address: past the bound a guess (and
the guessable bootstrap token) is answered 429 in the API's error shape with Retry-After and what
to do, logged once; tokens shieldes made still work, and an address behind a trusted load
balancer is counted on its own."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from shieldes import secrets
from shieldes.projections.shared_commands import CreateAdminToken
from tests.integration.gateway_harness import harness, wait_until

BOOT = "sign-in-limit-bootstrap-token-0123456789"


async def _whoami(base: str, token: str, forwarded: str | None = None) -> tuple[int, dict[str, str], dict]:
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    async with aiohttp.ClientSession() as s, s.get(base + "/admin/v1/whoami", headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


async def test_failed_sign_ins_are_bounded_per_address(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shieldes.admin")
    async with harness(database_url, admin_token=BOOT, admin_sign_in_failures=3, providers=False,
                       trusted_proxies="127.0.0.1") as h:
        minted = secrets.new_admin_token()
        await h.admin(CreateAdminToken(secrets.new_id("adm"), "ops", "operator", secrets.hash_key(minted),
                                       secrets.display_prefix(minted)))
        await h.sync()
        wrong = [(await _whoami(h.base, f"shd-adm-guess-{i}"))[0] for i in range(3)]
        status, headers, body = await _whoami(h.base, "shd-adm-guess-4")
        boot_held = (await _whoami(h.base, BOOT))[0]
        minted_ok = (await _whoami(h.base, minted))[0]
        # behind the load balancer (a trusted proxy), another client is counted on its own
        elsewhere = (await _whoami(h.base, BOOT, forwarded="203.0.113.9"))[0]
        spoofed = [(await _whoami(h.base, "guess", forwarded="198.51.100.7"))[0] for _ in range(4)]
        still_elsewhere = (await _whoami(h.base, BOOT, forwarded="203.0.113.9"))[0]
        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            metrics = await r.text()
        rows = h.sql("SELECT count(*) FROM events WHERE stream = 'config' AND type LIKE 'admin%%'")
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 13, timeout=10)
        assert await writer.flush_all(10)
        logged = h.sql("SELECT client_ip, status, error_code FROM request_log WHERE route LIKE '/admin/%%' "
                       "ORDER BY started_at")
    assert wrong == [401, 401, 401]
    assert status == 429 and body["error"]["code"] == "too_many_sign_in_attempts", body
    assert body["error"]["type"] == "rate_limit_error" and "try again in" in body["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= 20, headers  # a minute / 3
    assert boot_held == 429  # the guessable token is not compared while the bound holds
    assert minted_ok == 200  # a token shieldes made is never locked out by someone else's guesses
    assert elsewhere == 200 and spoofed == [401, 401, 401, 429] and still_elsewhere == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "shieldes.admin"]
    assert sum("too many failed attempts (client 127.0.0.1" in line for line in lines) == 1, lines
    assert sum("client 198.51.100.7" in line for line in lines) == 1, lines
    assert 'shieldes_admin_sign_in_failures_total{outcome="limited"} 3.0' in metrics, metrics
    assert 'shieldes_admin_sign_in_failures_total{outcome="refused"} 6.0' in metrics
    assert rows == [(1,)]
    # every failed sign-in is a row of the request log, with the client as the load balancer names it
    assert [(str(ip), st, code) for ip, st, code in logged] == [
        *[("127.0.0.1", 401, "invalid_admin_token")] * 3, *[("127.0.0.1", 429, "too_many_sign_in_attempts")] * 2,
        ("127.0.0.1", 200, None), ("203.0.113.9", 200, None),
        *[("198.51.100.7", 401, "invalid_admin_token")] * 3, ("198.51.100.7", 429, "too_many_sign_in_attempts"),
        ("203.0.113.9", 200, None)], logged  # failures are not written to the log (an attacker would fill it)
