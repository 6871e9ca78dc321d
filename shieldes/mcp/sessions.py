"""MCP sessions bound to the virtual key that opened them, with no state on any node.

The `Mcp-Session-Id` a client sees is the server's id wrapped with a MAC over (key id, server name,
server's id), under a key every node of the cluster derives from SHIELDES_CLUSTER_SECRET. Any node
checks a session id by recomputing the MAC: an id minted for another key or server, or altered, is
refused before the server is reached, and the server only ever sees its own ids. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from shieldes.mcp.jsonrpc import REFUSED, McpRefused

PREFIX = "shd1."
_LABEL = b"shieldes-mcp-session"
_MAC_BYTES = 32
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_UPSTREAM_ID = 1024  # longer ids from a server are still wrapped; longer wrapped ids are refused unread


def session_key(cluster_secret: str) -> bytes:
    """The MAC key for session ids, kept apart from the gossip signatures made with the same secret."""
    return hmac.new(cluster_secret.encode(), _LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, key_id: str, server: str, upstream_id: bytes) -> bytes:
    # lengths first: no (key id, server, id) triple can be spelled as another
    message = b"\0".join([str(len(key_id)).encode(), key_id.encode(), str(len(server)).encode(), server.encode(),
                          upstream_id])
    return hmac.new(key, message, hashlib.sha256).digest()


def wrap(key: bytes, key_id: str, server: str, upstream_id: str) -> str:
    """The session id the client gets for the server's `upstream_id` (visible ASCII, as MCP asks)."""
    raw = upstream_id.encode("utf-8", "surrogateescape")
    return f"{PREFIX}{_b64(raw)}.{_b64(_mac(key, key_id, server, raw))}"


def unwrap(key: bytes, key_id: str, server: str, session_id: str) -> str:
    """The server's id inside `session_id`, if it was minted for this key and server; else
    McpRefused (404, as MCP says a server answers a session it does not know: the client starts a
    new session)."""
    try:
        if not session_id.startswith(PREFIX) or len(session_id) > 2 * MAX_UPSTREAM_ID:
            raise ValueError("not a gateway session id")
        body, dot, mac = session_id[len(PREFIX):].partition(".")
        if not dot:
            raise ValueError("no MAC")
        raw, given = _unb64(body), _unb64(mac)
    except (ValueError, binascii.Error):
        raise not_found(server) from None
    if not hmac.compare_digest(given, _mac(key, key_id, server, raw)):
        raise not_found(server)
    return raw.decode("utf-8", "surrogateescape")


def not_found(server: str) -> McpRefused:
    return McpRefused(
        f"no MCP session with this Mcp-Session-Id for this key on server {server!r} (a session belongs to the "
        "key that opened it, through the same server); start a new session: send initialize without "
        "Mcp-Session-Id", code="mcp_session_not_found", rpc_code=REFUSED, status=404)
