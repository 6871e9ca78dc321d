"""Secrets at the edges: virtual key generation and hashing, provider key references and encryption."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shieldes.errors import ShieldesError

if TYPE_CHECKING:  # cryptography is imported where a key is made: `key create` only hashes
    from cryptography.fernet import Fernet

    from shieldes.settings import Settings

KEY_PREFIX = "sk-shd-"


class SecretError(ShieldesError):
    status = 500
    code = "secret_unavailable"


class BadEnvName(SecretError):
    """A variable name given to store as a key's reference that no environment can hold: the
    caller's input is at fault (a 400, as any value refused), not a secret this node cannot read."""

    status = 400
    type = "invalid_request_error"
    code = "command_rejected"


NO_ENCRYPTION_KEY = ("storing a provider key needs SHIELDES_ENCRYPTION_KEY; set it (`shieldes secrets generate-key` "
                     "makes one), or use --api-key-env VAR instead")


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


_SCRYPT_SALT = b"shieldes-encryption-key-v2"
_LEGACY_PREFIX = b"shieldes-fernet\x00"


def _key_material(encryption_key: str) -> bytes:
    """32 key bytes from SHIELDES_ENCRYPTION_KEY: a raw key (`base64:` + 32 bytes, or a 44-character
    Fernet key) is used as is; any other passphrase goes through scrypt (memory-hard, so guessing a
    weak passphrase from a stolen log costs an attacker real work per guess)."""
    raw = encryption_key.strip()
    candidate = raw[len("base64:"):] if raw.startswith("base64:") else raw
    if raw.startswith("base64:") or len(candidate) == 44:
        try:
            decoded = base64.urlsafe_b64decode(candidate.encode())
        except (ValueError, binascii.Error):
            decoded = b""
        if len(decoded) == 32:
            return decoded
        if raw.startswith("base64:"):
            raise SecretError("SHIELDES_ENCRYPTION_KEY starts with base64: but is not 32 base64 bytes; "
                              "generate one with `shieldes secrets generate-key`")
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=_SCRYPT_SALT, length=32, n=2**15, r=8, p=1).derive(raw.encode())


def _legacy_fernet(encryption_key: str) -> Fernet:
    """How tokens written before key ids were keyed (`enc:<token>`): readable, never written."""
    from cryptography.fernet import Fernet

    digest = hashlib.sha256(_LEGACY_PREFIX + encryption_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def generate_key() -> str:
    """A fresh raw key for SHIELDES_ENCRYPTION_KEY (256 random bits; no KDF needed)."""
    return "base64:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class _Key:
    """The Fernet keys derived from one SHIELDES_ENCRYPTION_KEY, and the id naming it."""

    key_id: str
    fernet: Fernet
    legacy: Fernet


def _make_key(encryption_key: str) -> _Key:
    from cryptography.fernet import Fernet

    material = _key_material(encryption_key)
    key_id = hashlib.sha256(b"shieldes-key-id\x00" + material).hexdigest()[:12]
    return _Key(key_id, Fernet(base64.urlsafe_b64encode(material)), _legacy_fernet(encryption_key))


def key_id_of(ref: str) -> str | None:
    """The key id an `enc:` reference was written under; `legacy` for tokens without one."""
    if not ref.startswith("enc:"):
        return None
    if ref.startswith(_V2):
        return ref[len(_V2):].split(":", 1)[0]
    return "legacy"


_V2 = "enc:v2:"


class Keyring:
    """The encryption keys one process holds: the current key encrypts; the current key and the
    old one (SHIELDES_ENCRYPTION_KEY_OLD, during a rotation) decrypt. Every ciphertext names its
    key id, so a node says which key it lacks instead of failing blindly."""

    def __init__(self, current: str | None, old: str | None = None) -> None:
        self._current = _make_key(current) if current else None
        self._keys = {k.key_id: k for k in (self._current, _make_key(old) if old else None) if k is not None}

    @property
    def current_key_id(self) -> str | None:
        return self._current.key_id if self._current else None

    def encrypt(self, plaintext: str) -> str:
        if self._current is None:
            raise SecretError(NO_ENCRYPTION_KEY)
        token = self._current.fernet.encrypt(plaintext.encode()).decode()
        return f"{_V2}{self._current.key_id}:{token}"

    def decrypt(self, ref: str) -> str:
        if not self._keys:
            raise SecretError("a provider key is encrypted but SHIELDES_ENCRYPTION_KEY is not set on this node; "
                              "set the key it was stored with")
        if ref.startswith(_V2):
            key_id, _, token = ref[len(_V2):].partition(":")
            key = self._keys.get(key_id)
            if key is None:
                raise SecretError(
                    f"a provider key is encrypted under key id {key_id}, which this node does not hold "
                    f"(it holds {', '.join(sorted(self._keys))}); set SHIELDES_ENCRYPTION_KEY or "
                    "SHIELDES_ENCRYPTION_KEY_OLD to that key"
                )
            candidates = [key.fernet]
        else:
            token = ref[len("enc:"):]
            candidates = [k.legacy for k in self._keys.values()]
        from cryptography.fernet import InvalidToken

        for fernet in candidates:
            try:
                return fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                continue
        raise SecretError(
            "a provider key cannot be decrypted with this node's SHIELDES_ENCRYPTION_KEY; "
            "set the key used when it was stored"
        )

    def needs_rotation(self, ref: str | None) -> bool:
        """Whether a stored reference is encrypted under anything but the current key."""
        kid = key_id_of(ref or "")
        return kid is not None and kid != self.current_key_id


def encrypt_secret(plaintext: str, encryption_key: str | None) -> str:
    return Keyring(encryption_key).encrypt(plaintext)


def env_ref(var: str) -> str:
    if not var or not all(c.isalnum() or c == "_" for c in var):
        raise BadEnvName(f"invalid environment variable name {var!r}: use letters, digits and _")
    return "env:" + var


def resolve_secret(
    ref: str | None, keys: Keyring | str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The plaintext provider key for a stored reference, read only when a request needs it."""
    if ref is None:
        return None
    env = environ if environ is not None else os.environ
    if ref.startswith("env:"):
        value = env.get(ref[4:])
        if value is None:
            raise SecretError(f"environment variable {ref[4:]} is not set on this node")
        return value
    if ref.startswith("enc:"):
        keyring = keys if isinstance(keys, Keyring) else Keyring(keys)
        return keyring.decrypt(ref)
    raise SecretError(f"unknown secret reference kind in {ref[:4]!r}")


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# --- the local encryption key ------------------------------------------------------------------
# With the embedded database (one user, one machine) `--api-key` needs no setup: a key is generated
# on first use and kept next to the database, readable by its owner only. With an external database
# nodes run elsewhere and must share SHIELDES_ENCRYPTION_KEY, so nothing is generated.

LOCAL_KEY_FILE = "encryption.key"


def local_key_path(data_dir: Path) -> Path:
    return data_dir / LOCAL_KEY_FILE


def encryption_key_for(settings: Settings, *, create: bool = False) -> str | None:
    """SHIELDES_ENCRYPTION_KEY, else (embedded database only) the data dir's local key, generated
    when `create` and absent."""
    if settings.encryption_key:
        return settings.encryption_key
    if settings.database_url:
        return None
    path = local_key_path(settings.data_dir)
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        if not create:
            return None
    except OSError as exc:
        raise SecretError(f"cannot read the local encryption key {path}: {exc.strerror}; "
                          "check its owner, or set SHIELDES_ENCRYPTION_KEY") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: two first uses at once agree on one key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or None
    with os.fdopen(fd, "w") as f:
        f.write(generate_key() + "\n")
    return path.read_text().strip()


def keyring_for(settings: Settings, *, create: bool = False) -> Keyring:
    """The keys this process encrypts and decrypts provider keys with (see `encryption_key_for`)."""
    return Keyring(encryption_key_for(settings, create=create), settings.encryption_key_old)


class NodeKeyring:
    """A node's keyring, built once a key exists: deriving a passphrase key (scrypt) is too slow to
    repeat per request or heartbeat, and the local key may only appear after the node started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ring: Keyring | None = None

    def __call__(self) -> Keyring:
        if self._ring is not None:
            return self._ring
        ring = keyring_for(self.settings)
        if ring.current_key_id is not None:
            self._ring = ring
        return ring

    def key_id(self) -> str | None:
        """The current key's id for cluster_nodes.info; None when unset or unusable."""
        try:
            return self().current_key_id
        except SecretError:
            return None


GENERATED_SECRET_PREFIX = "shieldes-workers-"  # a cluster secret `serve --workers` made for its own workers


def fingerprint(secret: str | None, purpose: str) -> str | None:
    """What nodes publish about a shared secret (cluster_nodes.info) so `shieldes doctor` can tell
    whether they agree, without revealing it: a truncated HMAC keyed by the secret."""
    if not secret:
        return None
    return hmac.new(secret.encode(), b"shieldes-fingerprint\x00" + purpose.encode(), hashlib.sha256).hexdigest()[:16]
