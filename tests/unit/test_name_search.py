"""A key search (`GET /admin/v1/keys?search=`, `key list --search`) over a snapshot's names found in
their joined text gives the names a look at each name gives, in the same order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.projections.keytable import layered_key_maps, names_in_order, names_matching
from shieldes.projections.name_search import NameText
from shieldes.projections.state import VirtualKey
from shieldes.snapshots import key_columns

# few letters, mixed case, a line break and letters whose lower case is longer ("İ" -> "i̇")
LETTERS = st.sampled_from("aAbB-\nİß1")
NAMES = st.text(LETTERS, max_size=6)


def _key(name: str) -> VirtualKey:
    return VirtualKey(f"id-{name}", name, f"h-{name}", "sk", None, None, None, False, None, None, None)


def _scan(names: set[str], search: str, after: str | None) -> list[str]:
    """The straightforward answer: every name looked at."""
    return sorted(n for n in names if (after is None or n > after) and search.lower() in n.lower())


@settings(max_examples=300, deadline=None)
@given(st.sets(NAMES, max_size=30), st.text(LETTERS, min_size=1, max_size=3), st.one_of(st.none(), NAMES))
def test_the_text_of_sorted_names_finds_the_names_a_scan_finds(names: set[str], search: str,
                                                              after: str | None) -> None:
    found = list(NameText(sorted(names)).matching(search.lower(), after))
    assert found == _scan(names, search, after)


@settings(max_examples=200, deadline=None)
@given(st.sets(NAMES, max_size=30), st.sets(NAMES, max_size=8), st.sets(NAMES, max_size=8),
       st.text(LETTERS, min_size=1, max_size=3), st.one_of(st.none(), NAMES))
def test_a_search_over_loaded_columns_and_later_changes_finds_what_a_scan_finds(
    loaded: set[str], later: set[str], removed: set[str], search: str, after: str | None
) -> None:
    """Names added after the snapshot (some also in it) and names gone since (a rename or an
    update that moved a key's name) are searched as the plain map of the same names is."""
    config = key_columns.from_plain(key_columns.to_plain({_key(n).id: _key(n) for n in loaded}))
    _, _, by_name = layered_key_maps(config)
    for name in later:
        by_name = by_name.set(name, f"id-{name}")
    for name in removed:
        by_name = by_name.delete(name)
    now = (loaded | later) - removed
    assert list(names_matching(by_name, search, after)) == _scan(now, search, after)
    assert list(names_matching(dict(by_name.items()), search, after)) == _scan(now, search, after)  # any map
    assert list(names_in_order(by_name, after)) == sorted(n for n in now if after is None or n > after)
