"""Secrets at the edges: virtual key generation and hashing, provider key references and encryption."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken

from shieldes.errors import ShieldesError

KEY_PREFIX = "sk-shd-"


class SecretError(ShieldesError):
    status = 500
    code = "secret_unavailable"


def new_virtual_key() -> str:
    """A fresh virtual key secret: 'sk-shd-' + 43 url-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


ADMIN_TOKEN_PREFIX = "shd-adm-"


def new_admin_token() -> str:
    """A fresh admin API token: 'shd-adm-' + 43 url-safe characters (256 bits)."""
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """The only form of a virtual key that is stored. Keys carry 256 bits, so one sha256 suffices."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[: len(KEY_PREFIX) + 4]


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


def _fernet(encryption_key: str) -> Fernet:
    # Any passphrase works: it is stretched to a 32-byte Fernet key.
    digest = hashlib.sha256(b"shieldes-fernet\x00" + encryption_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_secret(plaintext: str, encryption_key: str | None) -> str:
    if not encryption_key:
        raise SecretError(
            "storing a provider key needs SHIELDES_ENCRYPTION_KEY; set it, or use --api-key-env VAR instead"
        )
    return "enc:" + _fernet(encryption_key).encrypt(plaintext.encode()).decode()


def env_ref(var: str) -> str:
    if not var or not all(c.isalnum() or c == "_" for c in var):
        raise SecretError(f"invalid environment variable name {var!r}: use letters, digits and _")
    return "env:" + var


def resolve_secret(
    ref: str | None, encryption_key: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The plaintext provider key for a stored reference, read only when a request needs it."""
    if ref is None:
        return None
    env = environ if environ is not None else os.environ
    if ref.startswith("env:"):
        value = env.get(ref[4:])
        if value is None:
            raise SecretError(f"environment variable {ref[4:]} (provider key) is not set on this node; set it")
        return value
    if ref.startswith("enc:"):
        if not encryption_key:
            raise SecretError("a provider key is encrypted but SHIELDES_ENCRYPTION_KEY is not set on this node")
        try:
            return _fernet(encryption_key).decrypt(ref[4:].encode()).decode()
        except InvalidToken:
            raise SecretError(
                "a provider key cannot be decrypted with this node's SHIELDES_ENCRYPTION_KEY; "
                "set the key used when it was stored"
            ) from None
    raise SecretError(f"unknown secret reference kind in {ref[:4]!r}")


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
