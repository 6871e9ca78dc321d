"""HTTPS on the API port: SHIELDES_TLS_CERT and SHIELDES_TLS_KEY make the listener speak TLS (the
model API, the admin API, the console and the Responses WebSocket alike), for a node that faces
its clients without a TLS-terminating proxy in front. Loaded at start: a wrong file stops the node
with what to fix rather than leaving it serving plaintext. Renewed files (cert-manager, certbot)
are served to new connections without a restart (ServedCertificate)."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from shieldes.errors import TLSConfigError
from shieldes.file_watch import Fingerprint, fingerprint

log = logging.getLogger(__name__)


def server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """None when neither file is set; else a server context with TLS 1.2 at least, or a
    TLSConfigError saying what to set or fix."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = "SHIELDES_TLS_CERT" if cert is None else "SHIELDES_TLS_KEY"
        raise TLSConfigError(f"HTTPS needs both SHIELDES_TLS_CERT and SHIELDES_TLS_KEY; set {missing} (or unset "
                             "the other to serve plain HTTP)")
    for name, path in (("SHIELDES_TLS_CERT", cert), ("SHIELDES_TLS_KEY", key)):
        try:
            head = Path(path).read_bytes()[:4096]
        except OSError as exc:
            raise TLSConfigError(f"cannot read {name}={path}: {exc.strerror}; point it at a PEM file") from None
        if b"-----BEGIN" not in head:
            raise TLSConfigError(f"{name}={path} is not a PEM file; give a PEM certificate chain and key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as exc:
        raise TLSConfigError(f"SHIELDES_TLS_CERT={cert} and SHIELDES_TLS_KEY={key} do not make a certificate "
                             f"and its key ({exc.reason or exc}); give the key that matches the certificate, "
                             "unencrypted") from None
    return context


def certificate_expiry(cert: Path) -> float:
    """When the first certificate of the PEM file `cert` expires (Unix time)."""
    from cryptography import x509  # (the node's own dependency, for secrets at rest)

    try:
        return x509.load_pem_x509_certificate(Path(cert).read_bytes()).not_valid_after_utc.timestamp()
    except (OSError, ValueError) as exc:
        raise TLSConfigError(f"cannot read the certificate in SHIELDES_TLS_CERT={cert} ({exc}); give a PEM "
                             "certificate chain") from None


class ServedCertificate:
    """The certificate HTTPS serves, re-read when its files change. The listener keeps one context
    (`front`); every TLS handshake passes through its hello callback, which at most every `interval`
    seconds compares the files' fingerprint with the last one read and, when they changed, loads the
    pair into a new context, checked whole before it is used (a half-written pair or a key of another
    certificate is refused, logged with what to fix, and the certificate served before stays). The
    handshake then continues on the newest context: new connections get the new certificate,
    connections already open keep theirs. No timer: a node nobody connects to reads nothing."""

    def __init__(self, cert: Path, key: Path, context: ssl.SSLContext, interval: float,
                 clock: Callable[[], float] = time.monotonic, seen: Fingerprint = None) -> None:
        self._cert, self._key, self._interval, self._clock = cert, key, interval, clock
        self._seen = seen
        self.front = self.current = context
        self.expires_at = certificate_expiry(cert)
        self.loaded = self.refused = 0
        self._checked_at = clock()
        if interval > 0:
            self.front.sni_callback = self._on_hello

    @classmethod
    def of(cls, cert: Path | None, key: Path | None, interval: float) -> ServedCertificate | None:
        """None without SHIELDES_TLS_CERT and SHIELDES_TLS_KEY; else the pair, checked (a
        TLSConfigError says what to fix)."""
        seen = fingerprint(cert, key) if cert is not None and key is not None else None
        context = server_context(cert, key)  # (the fingerprint first: a change after the read is seen)
        if context is None:
            return None
        assert cert is not None and key is not None
        return cls(cert, key, context, interval, seen=seen)

    def _on_hello(self, conn: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None,
                  _context: ssl.SSLContext) -> None:
        now = self._clock()
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            self.check()
        if self.current is not self.front:
            conn.context = self.current

    def check(self) -> bool | None:
        """Load the files if they changed since the last read: True loaded, False refused (the
        served certificate stays), None unchanged."""
        seen = fingerprint(self._cert, self._key)
        if seen is None or seen == self._seen:
            return None
        self._seen = seen
        try:
            context = server_context(self._cert, self._key)
            expires_at = certificate_expiry(self._cert)
        except (TLSConfigError, OSError, ValueError) as exc:  # (a file gone between the look and the read)
            self.refused += 1
            log.error("HTTPS: the changed certificate files were not loaded: %s; new connections still get the "
                      "certificate loaded before (expires %s), and the files are read again when they change",
                      exc.message if isinstance(exc, TLSConfigError) else exc, _day(self.expires_at))
            return False
        assert context is not None
        self.current, self.expires_at = context, expires_at
        self.loaded += 1
        log.info("HTTPS: serving the certificate in %s to new connections (expires %s)", self._cert,
                 _day(expires_at))
        return True


def _day(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
