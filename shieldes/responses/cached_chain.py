"""What the stored-response memory cache keeps of a response, and the conversation a continuation
reads from a chain of them (responses/service.py's store)."""

from __future__ import annotations

import orjson

from shieldes.responses.objects import Body
from shieldes.responses.store import Encoded, StoredResponse

# What the memory cache keeps of a response: its JSON (Encoded), or for a large one the parsed
# objects the request and the answer already were (StoredResponse). A large row's JSON is a buffer
# malloc maps afresh; kept, every such row paid its page faults again (a turn carrying a 2 MB
# screenshot cost about 5 ms more CPU), while its parsed form is a few objects holding one long
# string. Small rows are cached as JSON: a third of the memory, nothing for the collector to walk.
Cached = Encoded | StoredResponse
PARSED_FROM = 128 * 1024  # bytes of JSON: glibc's default threshold for serving a block by mmap


def conversation(chain: list[Cached]) -> list[Body]:
    """The items a continuation sends before its own input: every stored turn's input and output,
    oldest first (`chain` is newest first). Consecutive turns cached as JSON (compact arrays, as
    `encode` writes them) are joined into one array and decoded at once: about a quarter less CPU than one
    decode per array."""
    items: list[Body] = []
    parts: list[bytes] = []
    for entry in reversed(chain):
        if isinstance(entry, Encoded):
            parts += (part[1:-1] for part in (entry.input, entry.output) if len(part) > 2)
            continue
        items += _decoded(parts)
        parts = []
        items += entry.items()
        items += (i for i in entry.response.get("output") or [] if isinstance(i, dict))
    return items + _decoded(parts)


def _decoded(parts: list[bytes]) -> list[Body]:
    if not parts:
        return []
    return [item for item in orjson.loads(b"[" + b",".join(parts) + b"]") if isinstance(item, dict)]


def own_items(stored: StoredResponse, cached: Cached) -> list[Body]:
    """What `conversation([cached])` reads of the response `stored`, cached as `cached`, taken from
    the objects it was made of (no decoding): its input and output items (every dict of them; a
    response cached parsed keeps its input as it is)."""
    output = stored.response.get("output")
    items = [i for i in stored.items() if isinstance(i, dict)] if isinstance(cached, Encoded) else list(stored.items())
    return (items + [i for i in output if isinstance(i, dict)]) if isinstance(output, list) else items


def items_weight(entry: Cached, held: int) -> int:
    """The JSON bytes of a cached response's input and output (all of it, for one cached parsed)."""
    return len(entry.input) + len(entry.output) if isinstance(entry, Encoded) else held
