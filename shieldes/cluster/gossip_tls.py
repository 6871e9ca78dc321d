"""Optional mutual TLS for the gossip port, on top of the HMAC on every message.

With SHIELDES_GOSSIP_TLS_CERT, _KEY and _CA set, the gossip server asks every client for a
certificate signed by the CA (and refuses the handshake otherwise), and every push verifies the
peer's server certificate against the same CA and the host name it dials. One CA per cluster:
a node with a certificate from another CA can neither push to nor receive from the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from shieldes.errors import ShieldesError


class GossipTLSError(ShieldesError):
    status = 400
    code = "gossip_tls"


@dataclass(frozen=True)
class GossipTLS:
    cert: bytes  # PEM chain of this node
    key: bytes  # PEM private key
    ca: bytes  # PEM CA bundle every peer's certificate must chain to

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


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
