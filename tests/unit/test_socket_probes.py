"""A Responses WebSocket's TCP socket probes its peer (responses_socket.probe_peer): a client that
vanished without closing is found within about two minutes."""

from __future__ import annotations

import socket
import sys

import pytest

from shieldes.gateway.responses_socket import PEER_PROBES, probe_peer


@pytest.mark.skipif(sys.platform != "linux", reason="the probe timings are Linux socket options")
def test_a_sockets_peer_is_probed_after_a_minute_and_given_up_within_two() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        probe_peer(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        got = {name: sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name)) for name, _ in PEER_PROBES}
    assert got == {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 6, "TCP_USER_TIMEOUT": 120_000}
    found_within = got["TCP_KEEPIDLE"] + got["TCP_KEEPINTVL"] * got["TCP_KEEPCNT"]
    assert found_within <= 120 and got["TCP_USER_TIMEOUT"] <= 120_000
