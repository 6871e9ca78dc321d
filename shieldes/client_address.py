"""Who is calling: the TCP peer, or, when the peer is a trusted proxy (SHIELDES_TRUSTED_PROXIES, a
load balancer or ingress), the address that proxy names in `X-Forwarded-For`. The request log, the
trace and the admin sign-in limit all read it from here.

X-Forwarded-For is read from the right: each trusted proxy appends the address it saw, so the first
entry from the right that is not a trusted proxy is the client. Entries left of it were written by
the client itself and prove nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """'10.0.0.0/8, 192.168.1.7' -> networks; a bare address is a /32 (or /128)."""
    out: list[Network] = []
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"bad SHIELDES_TRUSTED_PROXIES entry {item!r}: write addresses or networks "
                             "(10.0.0.0/8, 192.168.1.7, fd00::/8) separated by commas") from None
    return tuple(out)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # a dual-stack socket reports ::ffff:10.0.0.1
    return any(ip in net or (mapped is not None and mapped in net) for net in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str | None:
    if peer is None or not trusted or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop.strip("[]"))
        except ValueError:
            return peer  # a malformed entry: nothing to the left of it can be believed
        if not _trusted(hop, trusted):
            return hop
    return hops[0]  # every hop a trusted proxy: the farthest one
