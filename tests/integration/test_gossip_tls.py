"""Gossip with mutual TLS over real gRPC: certificates from one CA talk, a peer whose certificate
comes from another CA is refused in both directions, and a plaintext client cannot push."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shieldes.cluster import gossip_pb2, gossip_pb2_grpc, gossip_tls
from shieldes.cluster.gossip import Gossip, seal
from shieldes.cluster.gossip_tls import GossipCertificates, GossipTLS, GossipTLSError
from shieldes.cluster.view import NodeState
from shieldes.cluster.view_reads import window_count
from tests.integration.test_gossip import SECRET, until

PEM = serialization.Encoding.PEM


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cn: str) -> GossipTLS:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return GossipTLS(cert=cert.public_bytes(PEM), key=key_pem, ca=ca_cert.public_bytes(PEM))


def node(name: str, tls: GossipTLS | None, peers: dict[str, list[str]], count: int = 0) -> Gossip:
    return Gossip(node_id=name, secret=SECRET, host="127.0.0.1", port=0, interval=0.02, timeout=1.0,
                  boot_epoch=lambda: 1, targets=lambda: peers[name],
                  tls=GossipCertificates(tls) if tls is not None else None,
                  snapshot=lambda: NodeState(name, 1, windows={("key:k", "rpm", 5): (count, 0, 0)}))


@pytest.fixture
async def trio() -> AsyncIterator[tuple[Gossip, Gossip, Gossip, dict[str, list[str]]]]:
    cluster_ca, other_ca = make_ca("shieldes gossip CA"), make_ca("someone else's CA")
    peers: dict[str, list[str]] = {"a": [], "b": [], "rogue": []}
    a = node("a", issue(cluster_ca, "a"), peers, 3)
    b = node("b", issue(cluster_ca, "b"), peers, 4)
    rogue = node("rogue", issue(other_ca, "rogue"), peers, 10_000)
    for g in (a, b, rogue):
        await g.start()
    peers["a"] += [b.address, rogue.address]
    peers["b"] += [a.address, rogue.address]
    peers["rogue"] += [a.address, b.address]
    yield a, b, rogue, peers
    for g in (a, b, rogue):
        await g.stop()


async def test_same_ca_gossips_other_ca_is_refused_both_ways(
    trio: tuple[Gossip, Gossip, Gossip, dict[str, list[str]]],
) -> None:
    a, b, rogue, _ = trio
    await until(lambda: window_count(b.view, "key:k", "rpm", [5]) == (3, 0))
    await until(lambda: window_count(a.view, "key:k", "rpm", [5]) == (4, 0))
    # the rogue pushed as often as the others, and failed every time: its handshakes are refused
    await until(lambda: rogue.stats.send_errors >= 10 and a.stats.send_errors >= 5 and b.stats.send_errors >= 5)
    assert rogue.stats.sent == 0 and rogue.stats.received == 0
    assert "rogue" not in a.stats.peers and "rogue" not in b.stats.peers
    assert window_count(a.view, "key:k", "rpm", [5]) == (4, 0)  # the rogue's 10 000 never counted
    assert sorted(a.stats.peers) == ["b"] and sorted(b.stats.peers) == ["a"]


async def test_plaintext_client_cannot_push(trio: tuple[Gossip, Gossip, Gossip, dict[str, list[str]]]) -> None:
    _, b, _, _ = trio
    state = gossip_pb2.State(node_id="plain", boot_epoch=1, seq=1)
    async with grpc.aio.insecure_channel(b.address) as channel:
        stub = gossip_pb2_grpc.GossipStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Push(seal(state, SECRET), timeout=2.0)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "plain" not in b.stats.peers


def test_settings_need_all_three_readable_pem_files(tmp_path: Path) -> None:
    assert gossip_tls.load(None, None, None) is None
    with pytest.raises(GossipTLSError, match="set SHIELDES_GOSSIP_TLS_CA"):
        gossip_tls.load(tmp_path / "c.pem", tmp_path / "k.pem", None)
    with pytest.raises(GossipTLSError, match="cannot read SHIELDES_GOSSIP_TLS_CERT"):
        gossip_tls.load(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem")
    tls = issue(make_ca("ca"), "n")
    for name, data in (("c.pem", tls.cert), ("k.pem", tls.key), ("ca.pem", b"not pem")):
        (tmp_path / name).write_bytes(data)
    with pytest.raises(GossipTLSError, match=r"SHIELDES_GOSSIP_TLS_CA=.* is not a PEM file"):
        gossip_tls.load(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem")
    (tmp_path / "ca.pem").write_bytes(tls.ca)
    assert gossip_tls.load(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem") == tls
    files = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    assert GossipCertificates.of(*files, interval=10) is not None
    (tmp_path / "k.pem").write_bytes(issue(make_ca("ca"), "other").key)  # refused at start, not at each handshake
    with pytest.raises(GossipTLSError, match="is not the key of SHIELDES_GOSSIP_TLS_CERT"):
        GossipCertificates.of(*files, interval=10)


def _write(directory: Path, tls: GossipTLS) -> tuple[Path, Path, Path]:
    """The set's three files, each swapped in whole as a renewal writes it."""
    paths = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    for path, data in zip(paths, (tls.cert, tls.key, tls.ca), strict=True):
        path.with_suffix(".new").write_bytes(data)
        path.with_suffix(".new").replace(path)
    return paths


async def test_renewed_files_are_used_without_a_restart_and_a_broken_set_is_refused(tmp_path: Path) -> None:
    """Moving the cluster to a new CA with the nodes running: each node's CA file gets the new CA
    beside the old, then its certificate is renewed from the new CA. A node that only knows the
    new CA can then push to a renewed node and take its pushes: the server handed new connections
    the new set, the pushes opened new channels with it."""
    old_ca, new_ca = make_ca("shieldes gossip CA"), make_ca("shieldes gossip CA 2")
    dirs = {name: tmp_path / name for name in ("a", "b")}
    sets = {}
    for name, directory in dirs.items():
        directory.mkdir()
        paths = _write(directory, issue(old_ca, name))
        sets[name] = gossip_tls.GossipCertificates.of(*paths, interval=0.05)
    peers: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    nodes = {name: Gossip(node_id=name, secret=SECRET, host="127.0.0.1", port=0, interval=0.02, timeout=1.0,
                          boot_epoch=lambda: 1, targets=lambda name=name: peers[name], tls=sets[name],
                          snapshot=lambda name=name: NodeState(name, 1, windows={("key:k", "rpm", 5): (1, 0, 0)}))
             for name in ("a", "b")}
    c = node("c", issue(new_ca, "c"), peers, 1)  # knows only the new CA
    a, b = nodes["a"], nodes["b"]
    for g in (a, b, c):
        await g.start()
    try:
        peers["a"] += [b.address, c.address]
        peers["b"] += [a.address]
        peers["c"] += [a.address]
        await until(lambda: "b" in a.stats.peers and "a" in b.stats.peers)
        await until(lambda: c.stats.send_errors >= 3)
        assert "c" not in a.stats.peers and "a" not in c.stats.peers  # the old CA's node and the new one's: apart

        for name, directory in dirs.items():  # both CAs first, then the certificate from the new one
            renewed = issue(new_ca, name)
            _write(directory, GossipTLS(cert=renewed.cert, key=renewed.key, ca=old_ca[1].public_bytes(PEM) +
                                        new_ca[1].public_bytes(PEM)))
        await until(lambda: "c" in a.stats.peers and "a" in c.stats.peers, timeout=10)  # both ways, new CA
        sent = b.stats.sent
        await until(lambda: b.stats.sent > sent + 3)  # a and b gossip on
        assert sets["a"] is not None and sets["a"].loaded == 1 and sets["a"].generation == 1

        (dirs["a"] / "tls.key").write_bytes(issue(new_ca, "x").key)  # a key of another certificate
        await until(lambda: sets["a"] is not None and sets["a"].refused == 1)
        sent = a.stats.sent
        await until(lambda: a.stats.sent > sent + 3 and a.stats.received > 3)  # the set before goes on
        assert sets["a"].generation == 1
    finally:
        for g in (a, b, c):
            await g.stop()


async def test_a_node_with_gossip_tls_exports_its_certificate_expiry_and_reloads(
        database_url: str, tmp_path: Path) -> None:
    import aiohttp

    from tests.integration.gateway_harness import harness
    from tests.integration.test_https import tls_samples

    paths = _write(tmp_path, issue(make_ca("shieldes gossip CA"), "n"))
    node = harness(database_url, cluster_secret="gossip-metrics-secret", gossip_port=0,
                   gossip_tls_cert=paths[0], gossip_tls_key=paths[1], gossip_tls_ca=paths[2])
    async with node as h, aiohttp.ClientSession() as http, http.get(h.base + "/metrics") as resp:
        text = await resp.text()
    expires = x509.load_pem_x509_certificate(paths[0].read_bytes()).not_valid_after_utc.timestamp()
    assert tls_samples(text, "gossip") == (expires, 0, 0)
