"""The persistent map behind the config state: a Mapping equal to the dict of its items, whose
`set`/`delete` leave the original untouched (a request holding the old state keeps it)."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from shieldes.projections.pmap import PMap, with_item, without_item


@given(st.dictionaries(st.text(max_size=5), st.integers()), st.text(max_size=5), st.integers())
def test_set_and_delete_behave_like_a_copied_dict(items: dict[str, int], key: str, value: int) -> None:
    base = PMap(items)
    assert base == items and len(base) == len(items) and set(base) == set(items)
    grown = with_item(base, key, value)
    assert grown == {**items, key: value} and grown.get(key) == value
    assert base == items  # untouched
    shrunk = without_item(grown, key)
    assert shrunk == {k: v for k, v in items.items() if k != key} and key not in shrunk
    assert without_item(items, "absent-key-xyz") == items  # a plain dict is accepted too
    assert pickle.loads(pickle.dumps(grown)) == grown
