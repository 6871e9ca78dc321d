"""`shieldes doctor` says where this machine's encryption key comes from when it matches the nodes'."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shieldes.cluster.membership import NodeRecord
from shieldes.doctor import secret_findings
from shieldes.secrets import generate_key, keyring_for, local_key_path
from shieldes.settings import Settings


def _node(key_id: str | None) -> NodeRecord:
    now = datetime.now(UTC)
    return NodeRecord("n1", None, None, "x", 1, now, now, 0,
                      {"secrets": {"cluster": None, "cluster_generated": False, "encryption": key_id}}, True, 0.0)


def _encryption(settings: Settings) -> str:
    ring = keyring_for(settings)
    [finding] = [f for f in secret_findings([_node(ring.current_key_id)], settings)
                 if f.subject == "SHIELDES_ENCRYPTION_KEY"]
    assert finding.ok
    return finding.detail


def test_the_local_key_file_is_named_not_called_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHIELDES_ENCRYPTION_KEY", "SHIELDES_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path)
    local_key_path(tmp_path).write_text(generate_key() + "\n")
    assert _encryption(settings).endswith(f"(the local key file {local_key_path(tmp_path)})")

    settings = Settings(data_dir=tmp_path, encryption_key=generate_key())
    assert _encryption(settings).endswith("(set)")


def test_a_local_key_made_after_the_node_started_is_no_mismatch(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The quickstart's first `provider add --api-key` makes the local key while a node runs: until
    its next heartbeat the node publishes no key, and doctor must not call that a mismatch."""
    for name in ("SHIELDES_ENCRYPTION_KEY", "SHIELDES_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path)
    local_key_path(tmp_path).write_text(generate_key() + "\n")
    [finding] = [f for f in secret_findings([_node(None)], settings) if f.subject == "SHIELDES_ENCRYPTION_KEY"]
    assert finding.ok and "their next heartbeat" in finding.detail, finding
    # a key set in the environment that the nodes lack is still a mismatch
    settings = Settings(data_dir=tmp_path, encryption_key=generate_key())
    [finding] = [f for f in secret_findings([_node(None)], settings) if f.subject == "SHIELDES_ENCRYPTION_KEY"]
    assert not finding.ok
