"""HTTPS on the API port: SHIELDES_TLS_CERT and SHIELDES_TLS_KEY make the listener speak TLS (the
model API, the admin API, the console and the Responses WebSocket alike), for a node that faces
its clients without a TLS-terminating proxy in front. Loaded once at start: a wrong file stops the
node with what to fix rather than leaving it serving plaintext."""

from __future__ import annotations

import ssl
from pathlib import Path

from shieldes.errors import TLSConfigError


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
