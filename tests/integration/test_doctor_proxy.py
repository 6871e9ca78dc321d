"""`shieldes doctor` names the egress proxy when an upstream cannot be reached through it: a
proxy that is down, or one given in a form nodes cannot use, is not the upstream's URL to fix."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from shieldes.doctor import probe
from shieldes.projections.state import Deployment
from shieldes.secrets import Keyring

DEP = Deployment("corp", "openai", "http://vllm.example.test:8000/v1", None, ("m",), 1.0)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("proxy_url", ["socks5://127.0.0.1:1080", "closed"], ids=["unsupported", "down"])
async def test_an_upstream_not_reached_through_the_proxy_names_the_proxy(proxy_url: str) -> None:
    if proxy_url == "closed":
        proxy_url = f"http://127.0.0.1:{closed_port()}"
    async with aiohttp.ClientSession() as session:
        finding = await probe(session, DEP, Keyring(None), {}, {"http": proxy_url})
    assert not finding.ok
    assert "through the proxy HTTP_PROXY names" in finding.detail, finding
    assert finding.fix is not None and finding.fix.startswith("check HTTP_PROXY (and NO_PROXY)"), finding


async def test_a_loopback_upstream_never_proxied_is_reported_without_the_proxy() -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    dep = Deployment("corp", "openai", f"http://127.0.0.1:{closed_port()}/v1", None, ("m",), 1.0)  # loopback
    async with aiohttp.ClientSession() as session:
        finding = await probe(session, dep, Keyring(None), {}, {"http": down})
    assert not finding.ok and "proxy" not in finding.detail and "--base-url" in (finding.fix or ""), finding


async def test_the_proxy_variables_are_named_as_the_operator_spelt_them() -> None:
    """urllib reads `http_proxy` before `HTTP_PROXY`: a lower-case one set is the one to check."""
    down = f"http://127.0.0.1:{closed_port()}"
    environ = {"http_proxy": down, "no_proxy": "internal.example.test"}
    async with aiohttp.ClientSession() as session:
        finding = await probe(session, DEP, Keyring(None), environ, {"http": down, "no": "internal.example.test"})
    assert "through the proxy http_proxy names" in finding.detail, finding
    assert finding.fix is not None and finding.fix.startswith("check http_proxy (and no_proxy)"), finding
