"""Key names that hold a text, in any case, in name order, without looking at each name.

A snapshot's names (sorted once, keytable.NameIndex) are lowered and joined into one string, one
name a line, with each name's offset in it; a search is `str.find` over that string (C, about a
millisecond per 10 MB) and each hit is mapped back to its name by a binary search over the offsets.
A search holding a line break could span two names, so it is answered by looking at each name.
Memory: the lowered names once more plus 8 bytes a name (about 19 MB at a million keys).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence

SLICE = 20_000


class NameText:
    """The sorted names `names` lowered and joined, built once (in slices: a node builds it in a
    thread, and one C call over a million names would hold the GIL for its whole length)."""

    __slots__ = ("_names", "_starts", "_text")

    def __init__(self, names: Sequence[str]) -> None:
        self._names = names
        starts, parts, at = array("q"), [], 0
        for start in range(0, len(names), SLICE):
            lowered = [n.lower() for n in names[start:start + SLICE]]
            for n in lowered:
                starts.append(at)
                at += len(n) + 1
            parts.append("\n".join(lowered))
        self._starts, self._text = starts, "\n".join(parts)

    def matching(self, search: str, after: str | None = None) -> Iterator[str]:
        """The names above `after` whose lowered form holds `search` (already lowered, not empty), ascending."""
        names, starts, text = self._names, self._starts, self._text
        row = 0 if after is None else bisect_right(names, after)
        if "\n" in search:  # may span two names in the text: each name looked at
            yield from (names[r] for r in range(row, len(names)) if search in names[r].lower())
            return
        while row < len(names):
            hit = text.find(search, starts[row])
            if hit < 0:
                return
            row = bisect_right(starts, hit) - 1
            yield names[row]
            row += 1
