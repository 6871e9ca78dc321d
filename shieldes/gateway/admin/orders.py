"""The names a list route pages through, sorted once per version of the map that holds them.

Config maps are persistent (projections/pmap.py): a config change that leaves the teams alone
keeps the very same `team_ids_by_name` object, and a change to them makes a new one. So a sort
kept with the object it was made from is valid for exactly as long as that object is the
config's: every page of a listing then bisects one sorted list instead of sorting every name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NameOrders:
    """Per listed map (by a name such as "teams"), its keys sorted, with the map they came from."""

    def __init__(self) -> None:
        self._sorted: dict[str, tuple[Mapping[str, Any], list[str]]] = {}

    def of(self, what: str, names: Mapping[str, Any]) -> list[str]:
        held = self._sorted.get(what)
        if held is not None and held[0] is names:  # the same object: the same names
            return held[1]
        ordered = sorted(names)
        self._sorted[what] = (names, ordered)  # holds the map, so its identity cannot be reused
        return ordered
