"""A snapshot's teams part (column snapshots.teams, migration 0012): the teams, their name index
and each team's active key count, with the position and config chain tip of the snapshot it
belongs to. Deterministic JSON (sorted keys), zstd-compressed, sealed like the whole state
(seal.py). `team list` and `budget show --team` read this part instead of a million keys."""

from __future__ import annotations

from typing import Any

import orjson
import zstandard

from shieldes.projections.state import Budget, ConfigState, Team
from shieldes.projections.teams_view import TeamsState
from shieldes.snapshots.seal import SnapshotCorrupt, check_seal

TEAMS_FORMAT = 1  # this part's layout; another one is skipped (the reader loads the whole config)


def teams_to_json(config: ConfigState, position: int, config_tip: tuple[int, str]) -> bytes:
    """Taken in the same loop step as the whole state's JSON (the same state)."""
    plain = {
        "format": TEAMS_FORMAT,
        "position": position,
        "config_tip": list(config_tip),
        "teams": {t.id: {"name": t.name, "budget": _budget(t.budget)} for t in config.teams.values()},
        "team_ids_by_name": dict(config.team_ids_by_name),
        "team_keys": dict(config.team_keys),
    }
    return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)


def decode_teams(teams: bytes, checksum: str, position: int,
                 key: bytes | None = None) -> tuple[TeamsState, tuple[int, str]]:
    """The teams part and the config chain tip it was taken at; raises SnapshotCorrupt on any mismatch."""
    check_seal(teams, checksum, key)
    try:
        plain = orjson.loads(zstandard.ZstdDecompressor().decompress(teams))
        if plain["format"] != TEAMS_FORMAT or plain["position"] != position:
            raise SnapshotCorrupt(f"teams part header says format {plain['format']} position {plain['position']}")
        tip_position, tip_hash = plain["config_tip"]
        state = TeamsState(
            teams={i: Team(i, str(t["name"]), _budget_from(t["budget"])) for i, t in plain["teams"].items()},
            team_ids_by_name={str(n): str(i) for n, i in plain["team_ids_by_name"].items()},
            team_keys={str(i): int(n) for i, n in plain["team_keys"].items()},
        )
        return state, (int(tip_position), str(tip_hash))
    except SnapshotCorrupt:
        raise
    except (zstandard.ZstdError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError,
            AttributeError) as exc:
        raise SnapshotCorrupt(f"teams part undecodable: {type(exc).__name__}: {exc}") from exc


def _budget(b: Budget | None) -> dict[str, Any] | None:  # as the whole state writes a team's budget
    return None if b is None else {"amount_usd": b.amount_usd, "period": b.period}


def _budget_from(p: Any) -> Budget | None:
    return None if p is None else Budget(float(p["amount_usd"]), str(p["period"]))
