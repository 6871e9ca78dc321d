"""Which egress proxy an upstream call takes, from the standard proxy variables."""

from __future__ import annotations

import base64

import pytest

from shieldes.providers.proxies import Proxy, ProxySettingError, bypassed, parse_proxy, proxy_for, variable_name

ENV = {"https": "http://proxy.corp:3128", "http": "proxy.corp:8080",
       "no": "internal.corp,.svc, 10.0.0.0/8,api.local:8443"}


def test_proxy_urls_give_host_port_and_basic_credentials() -> None:
    assert parse_proxy("http://proxy.corp:3128") == Proxy("proxy.corp", 3128, None)
    assert parse_proxy("proxy.corp:8080") == Proxy("proxy.corp", 8080, None)
    assert parse_proxy("http://proxy.corp") == Proxy("proxy.corp", 80, None)
    auth = parse_proxy("http://svc%40corp:p%3Ass@proxy.corp:3128").authorization
    assert auth is not None and base64.b64decode(auth.removeprefix("Basic ")) == b"svc@corp:p:ss"


@pytest.mark.parametrize("url", ["https://proxy.corp:443", "socks5://proxy.corp:1080", "http://:3128", "http://h:x",
                                 "http://[::1", "http://u:pw@[zz]:3128"])
def test_proxies_that_cannot_be_used_say_how_to_write_one(url: str) -> None:
    with pytest.raises(ProxySettingError, match=r"http://\[user:password@\]host:port"):
        parse_proxy(url)


@pytest.mark.parametrize(
    ("scheme", "host", "port", "via"),
    [
        ("https", "api.openai.com", 443, "proxy.corp:3128"),
        ("http", "vllm.example.com", 80, "proxy.corp:8080"),
        ("https", "models.internal.corp", 443, None),  # NO_PROXY domain covers subdomains
        ("https", "internal.corp", 443, None),
        ("https", "a.b.svc", 443, None),  # .svc
        ("http", "10.1.2.3", 80, None),  # CIDR
        ("http", "11.1.2.3", 80, "proxy.corp:8080"),
        ("https", "api.local", 8443, None),  # host:port entry
        ("https", "api.local", 443, "proxy.corp:3128"),  # ... only that port
        ("http", "127.0.0.1", 8000, None),  # loopback never goes through a proxy
        ("http", "::1", 8000, None),
        ("https", "localhost", 443, None),
    ],
)
def test_each_upstream_takes_the_proxy_of_its_scheme_unless_exempt(scheme: str, host: str, port: int,
                                                                   via: str | None) -> None:
    proxy = proxy_for(scheme, host, port, ENV)
    assert (proxy.where if proxy else None) == via


def test_no_proxy_variable_means_direct_and_a_star_exempts_everything() -> None:
    assert proxy_for("https", "api.openai.com", 443, {}) is None
    assert proxy_for("https", "api.openai.com", 443, {"http": "proxy.corp:8080"}) is None
    assert bypassed("anything.example", 443, "*")
    assert not bypassed("example.com.evil", 443, "example.com")
    assert bypassed("[fd00::1]", 443, "fd00::/8")


def test_a_refused_proxy_url_is_never_repeated_with_its_password() -> None:
    with pytest.raises(ProxySettingError) as info:
        parse_proxy("socks5://svc:s3cret@proxy.corp:1080")
    assert "s3cret" not in str(info.value) and "proxy.corp:1080" in str(info.value)


def test_a_variable_is_named_as_set_the_lower_case_one_first_as_urllib_reads_them() -> None:
    assert variable_name("https", {}) == "HTTPS_PROXY"
    assert variable_name("https", {"HTTPS_PROXY": "p:1"}) == "HTTPS_PROXY"
    assert variable_name("https", {"https_proxy": "p:1", "HTTPS_PROXY": "q:1"}) == "https_proxy"
    assert variable_name("https", {"https_proxy": ""}) == "HTTPS_PROXY"  # empty: urllib ignores it
    assert variable_name("no", {"no_proxy": "x"}) == "no_proxy"
