"""Optional mutual TLS for the gossip port, on top of the HMAC on every message.

With SHIELDES_GOSSIP_TLS_CERT, _KEY and _CA set, the gossip server asks every client for a
certificate signed by the CA (and refuses the handshake otherwise), and every push verifies the
peer's server certificate against the same CA and the host name it dials. One CA per cluster:
a node with a certificate from another CA can neither push to nor receive from the others.
Renewed files are used without a restart (GossipCertificates).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from shieldes.errors import ShieldesError
from shieldes.file_watch import Fingerprint, fingerprint

log = logging.getLogger(__name__)


class GossipTLSError(ShieldesError):
    status = 400
    code = "gossip_tls"


@dataclass(frozen=True)
class GossipTLS:
    cert: bytes  # PEM chain of this node
    key: bytes  # PEM private key
    ca: bytes  # PEM CA bundle every peer's certificate must chain to

    def server_configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key, self.cert)], root_certificates=self.ca)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def checked(tls: GossipTLS) -> GossipTLS:
    """`tls` when its key is the certificate's and its CA file holds certificates; else a
    GossipTLSError saying what to fix (gRPC would only fail each handshake)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        cert = x509.load_pem_x509_certificate(tls.cert)
        key = serialization.load_pem_private_key(tls.key, password=None)
    except (ValueError, TypeError) as exc:  # (TypeError: an encrypted key)
        raise GossipTLSError(f"cannot read the gossip certificate and key ({exc}); give a PEM certificate and "
                             "its unencrypted PEM key") from None
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise GossipTLSError("SHIELDES_GOSSIP_TLS_KEY is not the key of SHIELDES_GOSSIP_TLS_CERT; give the key "
                             "that matches the certificate")
    try:
        x509.load_pem_x509_certificates(tls.ca)
    except ValueError as exc:
        raise GossipTLSError(f"SHIELDES_GOSSIP_TLS_CA holds no readable certificate ({exc}); give the PEM "
                             "certificate of the CA that signs every node's gossip certificate") from None
    return tls


def expiry(tls: GossipTLS) -> float:
    """When the set's certificate expires (Unix time; checked() read it already)."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(tls.cert).not_valid_after_utc.timestamp()


class GossipCertificates:
    """The gossip port's certificate, key and CA, re-read when their files change: at most every
    `interval` seconds, as a handshake comes in (the server asks for its configuration on each new
    connection) or a push goes out. A changed set is loaded whole and checked before use (a half
    written set, or a key of another certificate, is refused and logged, and the set before stays);
    the server then hands it to new connections, and the pushes open new channels with it
    (`generation`). Connections already open keep theirs."""

    def __init__(self, tls: GossipTLS, paths: tuple[Path, Path, Path] | None = None, interval: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, seen: Fingerprint = None) -> None:
        self.current = tls
        self.expires_at = expiry(tls)
        self.generation = 0  # +1 per set loaded after the first
        self.loaded = self.refused = 0
        self._paths, self._interval, self._clock, self._seen = paths, interval, clock, seen
        self._checked_at = clock()
        self._served = 0  # the generation the server was last handed
        self._lock = threading.Lock()  # (the server asks from gRPC's own threads)

    @classmethod
    def of(cls, cert: Path | None, key: Path | None, ca: Path | None,
           interval: float) -> GossipCertificates | None:
        """None without gossip TLS files; else the set, checked (a GossipTLSError says what to fix)."""
        seen = fingerprint(cert, key, ca) if cert and key and ca else None  # (before the read)
        tls = load(cert, key, ca)
        if tls is None:
            return None
        assert cert is not None and key is not None and ca is not None
        return cls(checked(tls), (cert, key, ca), interval, seen=seen)

    def maybe_check(self) -> None:
        """check(), at most every `interval` seconds."""
        if self._paths is None or self._interval <= 0:
            return
        now = self._clock()
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            self.check()

    def check(self) -> bool | None:
        """Load the files if they changed since the last read: True loaded, False refused (the
        set before stays), None unchanged."""
        if self._paths is None:
            return None
        with self._lock:
            seen = fingerprint(*self._paths)
            if seen is None or seen == self._seen:
                return None
            self._seen = seen
            try:
                tls = checked(load(*self._paths) or self.current)
            except GossipTLSError as exc:
                self.refused += 1
                log.error("gossip TLS: the changed files were not loaded: %s; the certificate set before stays, "
                          "and the files are read again when they change", exc.message)
                return False
            self.current, self.expires_at = tls, expiry(tls)
            self.generation += 1
            self.loaded += 1
            log.info("gossip TLS: new connections use the certificate in %s", self._paths[0])
            return True

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self.current.server_configuration(), self._fetch,
                                                   require_client_authentication=True)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question before each new connection's handshake: a newer set, or None."""
        self.maybe_check()
        with self._lock:
            if self._served == self.generation:
                return None
            self._served = self.generation
            return self.current.server_configuration()


def load(cert: Path | None, key: Path | None, ca: Path | None) -> GossipTLS | None:
    """None when no TLS file is configured; all three or a GossipTLSError naming what is missing."""
    given = {"SHIELDES_GOSSIP_TLS_CERT": cert, "SHIELDES_GOSSIP_TLS_KEY": key, "SHIELDES_GOSSIP_TLS_CA": ca}
    if not any(given.values()):
        return None
    missing = [name for name, path in given.items() if not path]
    if missing:
        raise GossipTLSError("gossip TLS needs all of SHIELDES_GOSSIP_TLS_CERT, _KEY and _CA; "
                             f"set {', '.join(missing)}")
    contents: list[bytes] = []
    for name, path in given.items():
        assert path is not None
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise GossipTLSError(f"cannot read {name}={path}: {exc.strerror}; point it at a PEM file") from exc
        if b"-----BEGIN" not in data:
            raise GossipTLSError(f"{name}={path} is not a PEM file; give a PEM certificate or key")
        contents.append(data)
    return GossipTLS(cert=contents[0], key=contents[1], ca=contents[2])
