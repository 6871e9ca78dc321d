"""Checking stored snapshots against the log, for `shieldes audit verify`: a pure walk.

Fed the config events in position order (the same walk that checks the hash chain), it folds the
config and, at each snapshot's position, compares the snapshot's recorded chain tip and its whole
config with what the log says. A snapshot that decodes but disagrees was written from another
state (or forged): nodes must not start from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shieldes.events.codec import GENESIS_HASH, Codec
from shieldes.events.store import RecordedEvent
from shieldes.projections.config import apply_config
from shieldes.projections.projector import Projection
from shieldes.projections.state import ConfigState
from shieldes.snapshots.codec import config_to_plain


@dataclass(frozen=True)
class SnapshotProblem:
    snapshot_id: int
    position: int
    reason: str


class SnapshotWalker:
    def __init__(self, snapshots: dict[int, tuple[int, Projection]], codec: Codec | None = None) -> None:
        """`snapshots`: id -> (position, decoded projection), the ones that decoded."""
        self._pending = sorted(snapshots.items(), key=lambda item: item[1][0])
        self._codec = codec or Codec()
        self._config = ConfigState()
        self._tip: tuple[int, str] = (0, GENESIS_HASH)
        self.problems: list[SnapshotProblem] = []
        self.checked = 0

    def _check_up_to(self, position: int) -> None:
        """Compare every snapshot at a position before `position` with the config folded so far."""
        while self._pending and self._pending[0][1][0] < position:
            snap_id, (snap_position, projection) = self._pending.pop(0)
            self.checked += 1
            if projection.config_tip != self._tip:
                self.problems.append(SnapshotProblem(
                    snap_id, snap_position,
                    f"its recorded config tip {projection.config_tip[0]} does not match the log's "
                    f"{self._tip[0]}"))
            elif config_to_plain(projection.config) != config_to_plain(self._config):
                self.problems.append(SnapshotProblem(
                    snap_id, snap_position, "its config differs from the config the log folds to"))

    def feed(self, event: RecordedEvent) -> None:
        self._check_up_to(event.position)
        if not self._pending:
            return  # no snapshot left to compare: no need to fold (or even read) the rest
        self._config = apply_config(self._config, self._codec.decode(event.type, event.version, event.data))
        self._tip = (event.position, event.hash or "")

    def finish(self) -> list[SnapshotProblem]:
        self._check_up_to(2**63)
        return self.problems
