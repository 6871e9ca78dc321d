"""Encryption of stored provider keys: key ids, raw keys and passphrases, legacy tokens, rotation."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.fernet import Fernet

from shieldes.secrets import Keyring, SecretError, generate_key, key_id_of, resolve_secret


def test_ciphertext_names_its_key_and_round_trips() -> None:
    ring = Keyring("correct horse battery staple")
    ref = ring.encrypt("sk-provider")
    assert ref.startswith(f"enc:v2:{ring.current_key_id}:")
    assert key_id_of(ref) == ring.current_key_id
    assert ring.decrypt(ref) == "sk-provider"
    assert "sk-provider" not in ref


def test_raw_key_is_used_without_kdf_and_differs_from_passphrase_ids() -> None:
    raw = generate_key()
    assert raw.startswith("base64:") and len(base64.urlsafe_b64decode(raw[7:])) == 32
    a, b = Keyring(raw), Keyring(raw)
    assert a.current_key_id == b.current_key_id
    assert a.current_key_id != Keyring("other").current_key_id
    assert b.decrypt(a.encrypt("x")) == "x"
    fernet_style = Fernet.generate_key().decode()  # a 44-character Fernet key is a raw key too
    assert Keyring(fernet_style).decrypt(Keyring(fernet_style).encrypt("y")) == "y"


def test_malformed_raw_key_is_refused_with_advice() -> None:
    with pytest.raises(SecretError, match="generate-key"):
        Keyring("base64:not-32-bytes")


def test_wrong_key_names_the_key_id_it_needs() -> None:
    ref = Keyring("old").encrypt("sk")
    with pytest.raises(SecretError, match=f"key id {key_id_of(ref)}.*SHIELDES_ENCRYPTION_KEY_OLD"):
        Keyring("new").decrypt(ref)
    assert Keyring("new", old="old").decrypt(ref) == "sk"


def test_legacy_tokens_without_key_id_still_decrypt() -> None:
    digest = hashlib.sha256(b"shieldes-fernet\x00" + b"pass").digest()
    legacy = "enc:" + Fernet(base64.urlsafe_b64encode(digest)).encrypt(b"sk-old").decode()
    assert key_id_of(legacy) == "legacy"
    assert Keyring("pass").decrypt(legacy) == "sk-old"
    assert Keyring("new", old="pass").decrypt(legacy) == "sk-old"
    assert Keyring("new", old="pass").needs_rotation(legacy)
    with pytest.raises(SecretError, match="cannot be decrypted"):
        Keyring("other").decrypt(legacy)


def test_needs_rotation_only_for_other_keys() -> None:
    new, old = Keyring("new"), Keyring("old")
    assert not new.needs_rotation(new.encrypt("a"))
    assert new.needs_rotation(old.encrypt("a"))
    assert not new.needs_rotation("env:VAR") and not new.needs_rotation(None)


def test_resolve_secret_accepts_a_keyring_or_a_passphrase() -> None:
    ring = Keyring("p")
    ref = ring.encrypt("v")
    assert resolve_secret(ref, ring) == "v"
    assert resolve_secret(ref, "p") == "v"
    with pytest.raises(SecretError, match="not set"):
        resolve_secret(ref, None)
