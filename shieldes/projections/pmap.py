"""A persistent map for the config state: `set` and `delete` return a new map sharing almost all
of the old one (a hash array mapped trie, `immutables.Map`), so folding one config event costs
O(log32 n) instead of copying every key. A read-only Mapping: it compares equal to a dict with the
same items, and reads are as cheap as the trie's."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

import immutables

V = TypeVar("V")
REPR_ITEMS = 8


class PMap(Mapping[str, V], Generic[V]):
    __slots__ = ("_map", "get")

    def __init__(self, items: Mapping[str, V] | immutables.Map[str, V] | None = None) -> None:
        inner: immutables.Map[str, V] = (
            items if isinstance(items, immutables.Map) else immutables.Map(items or {})
        )
        self._map = inner
        self.get = inner.get  # type: ignore[method-assign]  # the hot path's lookup, without a Python frame

    def __getitem__(self, key: str) -> V:
        return self._map[key]

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        """Short for big maps: asyncio formats a finished task's result (the config, in the CLI)
        when it looks up the SIGINT handler, and a million keys in full took seconds."""
        if len(self._map) <= REPR_ITEMS:
            return f"PMap({dict(self._map)!r})"
        head = dict(item for item, _ in zip(self._map.items(), range(REPR_ITEMS), strict=False))
        return f"PMap({head!r} and {len(self._map) - REPR_ITEMS} more)"

    def set(self, key: str, value: V) -> PMap[V]:
        return PMap(self._map.set(key, value))

    def delete(self, key: str) -> PMap[V]:
        try:
            return PMap(self._map.delete(key))
        except KeyError:
            return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (PMap, (dict(self._map),))


def with_item(mapping: Mapping[str, V], key: str, value: V) -> PMap[V]:
    base = mapping if isinstance(mapping, PMap) else PMap(mapping)
    return base.set(key, value)


def without_item(mapping: Mapping[str, V], key: str) -> PMap[V]:
    base = mapping if isinstance(mapping, PMap) else PMap(mapping)
    return base.delete(key)
