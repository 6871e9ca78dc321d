"""Which egress proxy, if any, an upstream call goes through: the standard environment variables
(HTTPS_PROXY for https upstreams, HTTP_PROXY for http ones, NO_PROXY for exceptions, lower case
first), read once when the node's upstream client is made. Loopback upstreams (a local model
server, a sidecar) never go through a proxy. Pure decisions; the client does the connecting."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class ProxySettingError(ValueError):
    """A proxy variable that cannot be used (wrong scheme, no host)."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization header's value, from user:password in the URL

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """An `http://[user:password@]host[:port]` proxy URL (a bare host:port means http)."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError:  # `http://[::1`: no URL at all; show only what follows any user:password@
        raise ProxySettingError(
            f"proxy {url.rpartition('@')[2]!r} cannot be used: give it as http://[user:password@]host:port "
            "(an IPv6 address in brackets)") from None
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or port == -1:
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # never the password
        raise ProxySettingError(
            f"proxy {shown!r} cannot be used: give it as http://[user:password@]host:port (HTTPS and SOCKS "
            "proxies are not supported)")
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, port or 80, auth)


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY exempts host:port: `*`, a host or domain (`example.com` and `.example.com`
    both cover its subdomains), an IP address or CIDR range, each optionally with `:port`."""
    host = host.lower().strip("[]")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, want_port = entry, None
        if entry.startswith("["):  # [v6]:port
            name, _, rest = entry[1:].partition("]")
            want_port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            name, want_port = entry.split(":")
        if want_port and want_port.isdigit() and int(want_port) != port:
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                return True
        except ValueError:
            pass
    return False


def variable_name(kind: str, environ: Mapping[str, str]) -> str:
    """The variable an operator set for `kind` ("https", "http", "no"), as they wrote it: urllib reads
    the lower-case name first, so that one is named when it is set, else the upper-case one."""
    lower = f"{kind}_proxy"
    return lower if environ.get(lower) else lower.upper()


def proxy_for(scheme: str, host: str, port: int, env: Mapping[str, str]) -> Proxy | None:
    """The proxy a call to scheme://host:port goes through, given urllib's view of the proxy
    variables (`urllib.request.getproxies_environment()`: {"https": url, "http": url, "no": list})."""
    url = env.get(scheme)
    if not url or _loopback(host):
        return None
    no_proxy = env.get("no")
    if no_proxy and bypassed(host, port, no_proxy):
        return None
    return parse_proxy(url)
