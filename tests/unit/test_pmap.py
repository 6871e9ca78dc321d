"""The persistent map behind the config state: a Mapping equal to the dict of its items, whose
`set`/`delete` leave the original untouched (a request holding the old state keeps it)."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from shieldes.projections.pmap import LayeredMap, PMap, with_item, without_item


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


ops = st.lists(st.tuples(st.booleans(), st.sampled_from("abcdefgh"), st.integers()), max_size=30)


@given(st.dictionaries(st.sampled_from("abcdef"), st.integers()), ops)
def test_a_layered_map_behaves_like_a_copied_dict(base: dict[str, int], changes: list[tuple[bool, str, int]]) -> None:
    """Any sequence of sets and deletes over a frozen base reads, iterates and counts as the same
    changes made to a copy of the base; the base and every earlier version stay as they were."""
    frozen = dict(base)
    layered: LayeredMap[int] = LayeredMap(frozen)
    expected = dict(base)
    versions = [(layered, dict(expected))]
    for is_set, key, value in changes:
        if is_set:
            layered, expected[key] = layered.set(key, value), value
        else:
            layered = without_item(layered, key)  # type: ignore[assignment]
            expected.pop(key, None)
        versions.append((layered, dict(expected)))
    for version, items in versions:
        assert version == items and len(version) == len(items) and sorted(version) == sorted(items)
        assert all(version.get(k) == items.get(k) and (k in version) == (k in items) for k in "abcdefghz")
    assert frozen == base
    assert pickle.loads(pickle.dumps(layered)) == expected
