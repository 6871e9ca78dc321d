"""Persistent maps for the config state: `set` and `delete` return a new map sharing almost all
of the old one (a hash array mapped trie, `immutables.Map`), so folding one config event costs
O(log32 n) instead of copying every key. Read-only Mappings: they compare equal to a dict with the
same items. PMap holds everything in the trie; LayeredMap keeps a snapshot's frozen index as its
base and only the changes since in the trie."""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import Any, Generic, TypeVar

import immutables

V = TypeVar("V")
REPR_ITEMS = 8


class _Values(ValuesView[V]):
    """A values view iterated by the map's own fast iterator (the Mapping mixin's looks every key
    up again: seconds over a million keys)."""

    def __init__(self, source: Callable[[], Iterable[V]], length: int) -> None:
        self._source, self._length = source, length

    def __iter__(self) -> Iterator[V]:
        return iter(self._source())

    def __len__(self) -> int:
        return self._length


class _Items(ItemsView[str, V]):
    def __init__(self, source: Callable[[], Iterable[tuple[str, V]]], length: int) -> None:
        self._source, self._length = source, length

    def __iter__(self) -> Iterator[tuple[str, V]]:
        return iter(self._source())

    def __len__(self) -> int:
        return self._length


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

    def values(self) -> ValuesView[V]:
        return _Values(self._map.values, len(self._map))

    def items(self) -> ItemsView[str, V]:
        return _Items(self._map.items, len(self._map))

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




class _Missing:
    """Overlay markers: not in the overlay at all / removed from the base."""

    __slots__ = ()


_ABSENT = _Missing()
_REMOVED = _Missing()


class LayeredMap(Mapping[str, V], Generic[V]):
    """A frozen base mapping (a snapshot's key index, built once, never mutated) under a persistent
    overlay of the changes folded since: `set` and `delete` cost O(log32 changes) and never copy the
    base, so a node that loaded a million keys from a snapshot folds a revocation as fast as any
    event. Reads look in the overlay first, then in the base."""

    __slots__ = ("_base", "_over")

    def __init__(self, base: Mapping[str, V], over: immutables.Map[str, V | _Missing] | None = None) -> None:
        self._base = base
        self._over: immutables.Map[str, V | _Missing] = over if over is not None else immutables.Map()

    @property
    def base(self) -> Mapping[str, V]:
        return self._base

    def get(self, key: str, default: Any = None) -> Any:
        value = self._over.get(key, _ABSENT)
        if value is _ABSENT:
            return self._base.get(key, default)
        return default if value is _REMOVED else value

    def __getitem__(self, key: str) -> V:
        value = self._over.get(key, _ABSENT)
        if value is _ABSENT:
            return self._base[key]
        if isinstance(value, _Missing):
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        value = self._over.get(key, _ABSENT)
        return key in self._base if value is _ABSENT else value is not _REMOVED

    def __iter__(self) -> Iterator[str]:
        over = self._over
        for key in self._base:
            if key not in over:
                yield key
        for key, value in over.items():
            if not isinstance(value, _Missing):
                yield key

    def __len__(self) -> int:
        """O(changes), not kept up to date by set/delete: those would have to look each key up in
        the base, and a base may build its index on first lookup (keytable.NameIndex)."""
        base = self._base
        grown = sum(1 for k, v in self._over.items() if not isinstance(v, _Missing) and k not in base)
        return len(base) + grown - sum(1 for v in self._over.values() if v is _REMOVED)

    def items(self) -> ItemsView[str, V]:
        return _Items(self._items, len(self))

    def values(self) -> ValuesView[V]:
        return _Values(lambda: (v for _, v in self._items()), len(self))

    def changes(self) -> Iterator[tuple[str, V | None]]:
        """What the overlay holds: (key, value), or (key, None) for a key removed from the base."""
        for key, value in self._over.items():
            yield key, None if isinstance(value, _Missing) else value

    def _items(self) -> Iterator[tuple[str, V]]:
        over = self._over
        for item in self._base.items():
            if item[0] not in over:
                yield item
        for key, value in over.items():
            if not isinstance(value, _Missing):
                yield key, value

    def __repr__(self) -> str:
        return f"LayeredMap({len(self._base)} in the base, {len(self._over)} changed)"

    def set(self, key: str, value: V) -> LayeredMap[V]:
        return LayeredMap(self._base, self._over.set(key, value))

    def delete(self, key: str) -> LayeredMap[V]:
        if key not in self:
            return self
        over = self._over.set(key, _REMOVED) if key in self._base else self._over.delete(key)
        return LayeredMap(self._base, over)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PMap, (dict(self.items()),))


def with_item(mapping: Mapping[str, V], key: str, value: V) -> PMap[V] | LayeredMap[V]:
    base = mapping if isinstance(mapping, PMap | LayeredMap) else PMap(mapping)
    return base.set(key, value)


def without_item(mapping: Mapping[str, V], key: str) -> PMap[V] | LayeredMap[V]:
    base = mapping if isinstance(mapping, PMap | LayeredMap) else PMap(mapping)
    return base.delete(key)
