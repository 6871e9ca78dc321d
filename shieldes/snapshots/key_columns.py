"""Snapshot format 3's virtual keys: KeyColumns as plain JSON values.

    {"id": [...], "name": [...], "key_hash": [...], "prefix": [...],   one entry per key, by id
     "optional": {"rpm": [[rows], [values]],                           the rows that set it, or
                  "team_id": {"all": [values]},                        one per key (null: unset),
                  "revoked": [rows], ...}}                             only the fields some key sets

A loader parses four lists of strings and a few short ones instead of a million objects. A field
that more than DENSE_SHARE of the keys set is written one value per key (no row numbers to parse).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shieldes.projections.keytable import SPARSE, KeyColumns, columns_of
from shieldes.projections.state import Budget, VirtualKey

Plain = dict[str, Any]
DENSE_SHARE = 0.25


class Dense(list[Any]):
    """A field set on most keys: its value at every row (None: unset)."""

    def get(self, row: int, default: Any = None) -> Any:
        value = self[row]
        return default if value is None else value


def _plain_value(field: str, value: Any) -> Any:
    """(Tuples, encoded as the same arrays: the cyclic collector stops tracking a tuple of plain
    values at its first pass, a list it walks at every collection while the snapshot is encoded.)"""
    if field == "models":
        return tuple(value)
    if field == "budget":
        return (value.amount_usd, value.period)
    return value


def _values(field: str, plain: list[Any]) -> list[Any]:
    """Plain values as the state holds them (None stays None). Equal values become one shared
    object: keys tend to share a few budgets and model lists, so this saves both the time to build
    an object per key and the memory it would hold."""
    if field not in ("models", "budget"):
        return plain
    shared: dict[tuple[Any, ...], Any] = {}

    def value(v: list[Any]) -> Any:
        key = tuple(v)
        made = shared.get(key)
        if made is None:
            if field == "models":
                made = tuple(str(m) for m in key)
            else:
                amount, period = key
                made = Budget(float(amount), str(period))
            shared[key] = made
        return made

    return [None if v is None else value(v) for v in plain]


def to_plain(keys: Mapping[str, VirtualKey]) -> Plain:
    c = columns_of(keys)
    optional: Plain = {}
    for field, values in c.sparse.items():
        if not values:
            continue
        if field == "revoked":
            optional[field] = sorted(values)  # row order, however the columns were put together
        elif len(values) > DENSE_SHARE * len(c.id):
            optional[field] = {"all": [None if (v := values.get(r)) is None else _plain_value(field, v)
                                       for r in range(len(c.id))]}
        else:
            rows = sorted(values)
            optional[field] = [rows, [_plain_value(field, values[r]) for r in rows]]
    return {"id": list(c.id), "name": list(c.name), "key_hash": list(c.key_hash), "prefix": list(c.prefix),
            "optional": optional}


def from_plain(p: Plain) -> KeyColumns:
    """Raises ValueError/KeyError/TypeError on a layout it does not know (the codec reports the
    snapshot as undecodable)."""
    n = len(p["id"])
    if not len(p["name"]) == len(p["key_hash"]) == len(p["prefix"]) == n:
        raise ValueError("key columns of different lengths")
    if p["id"] != sorted(p["id"]):  # a key is found by binary search until its index is built
        raise ValueError("key ids out of order")
    sparse: dict[str, Mapping[int, Any] | Dense] = {}
    for field, plain in p["optional"].items():
        if field not in SPARSE:
            raise ValueError(f"unknown key field {field!r}")
        if isinstance(plain, dict):
            if len(plain["all"]) != n:
                raise ValueError(f"key field {field!r} has {len(plain['all'])} values for {n} keys")
            sparse[field] = Dense(_values(field, plain["all"]))
            continue
        if field == "revoked":
            sparse[field] = dict.fromkeys(plain, True)
        else:
            rows, values = plain
            sparse[field] = dict(zip(rows, _values(field, values), strict=True))
        if sparse[field] and not (min(sparse[field]) >= 0 and max(sparse[field]) < n):
            raise ValueError(f"key field {field!r} names a row past the {n} keys")
    return KeyColumns(p["id"], p["name"], p["key_hash"], p["prefix"], sparse)
