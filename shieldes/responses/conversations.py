"""The Conversations API on Postgres: conversations and their items, scoped to the key that
created them, and a Responses turn's reading of a conversation and appending to it.

Every read and write goes to Postgres (no cache, no queue): a turn's input and output items are
appended before the client gets the end of its answer (the JSON body, or a stream's terminal
event), so the next turn on any node reads them. A conversation is an ordered log shared by its
turns; a write queued off the request path could be overtaken by the next turn on another node.
The cost is one INSERT round trip per turn that names a conversation. Each wait on Postgres is
bounded by the node's DbWait: a stalled database is a 503 to retry, not a request held open."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import psycopg

from shieldes.dbwait import DbWait, first_line
from shieldes.errors import InvalidRequest, NotFound, ShieldesError
from shieldes.responses.conversation_store import ConversationRow, ConversationTable, ItemRow
from shieldes.responses.objects import Body, new_id, without_encrypted
from shieldes.responses.request import check_metadata, normalize_item

MAX_ITEMS = 20  # items per create or add, as OpenAI takes them
T = TypeVar("T")
_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fc_out", "reasoning": "rs",
              "custom_tool_call": "ctc", "custom_tool_call_output": "ctc_out"}


def conversation_not_found(conv: str) -> NotFound:
    return NotFound(f"Conversation with id {conv!r} not found: it never existed, was deleted, or belongs to "
                    "another API key; create one with POST /v1/conversations", code="not_found", param="conversation")


def item_not_found(conv: str, item: str) -> NotFound:
    return NotFound(f"Item with id {item!r} not found in conversation {conv!r}: list its items with "
                    f"GET /v1/conversations/{conv}/items", code="not_found")


def item_row(item: Body) -> ItemRow:
    """An item to store: its own id if it has one, else a new id of its type's prefix (the
    stored item stays as it was sent, so upstream gets no id the gateway made up)."""
    given = item.get("id")
    if isinstance(given, str) and given:
        return ItemRow(given, item)
    return ItemRow(new_id(_ID_PREFIX.get(str(item.get("type")), "item")), item)


def shown_item(row: ItemRow, encrypted: bool) -> Body:
    """An item as the API returns it: with its id, a message with its status."""
    out = dict(row.item, id=row.id)
    if out.get("type") == "message":
        out.setdefault("status", "completed")
    if not encrypted and isinstance(out.get("encrypted_content"), str):
        out = without_encrypted({"output": [out]})["output"][0]
    return out


def conversation_object(row: ConversationRow) -> Body:
    return {"id": row.id, "object": "conversation", "created_at": int(row.created_at), "metadata": row.metadata}


def parse_items(value: Any, required: bool) -> list[Body]:
    """`items` of a create or add: a list of up to MAX_ITEMS input items."""
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("field 'items' must be a list of items, e.g. [{\"type\": \"message\", \"role\": "
                             "\"user\", \"content\": \"hello\"}]", param="items")
    if len(value) > MAX_ITEMS:
        raise InvalidRequest(f"field 'items' holds {len(value)} items; send at most {MAX_ITEMS} per request "
                             "(add the rest with POST /v1/conversations/{id}/items)", param="items")
    try:
        return [normalize_item(item, i) for i, item in enumerate(value)]
    except InvalidRequest as exc:  # the same words, about `items` rather than `input`
        raise InvalidRequest(exc.message.replace("input[", "items[", 1), param="items") from None


def parse_metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("field 'metadata' has the wrong type: an object of up to 16 string values",
                             param="metadata")
    check_metadata(value)
    return dict(value)


def refused_items(exc: psycopg.Error) -> ShieldesError | None:
    """A statement Postgres refused for the items it carries: the client's to fix, not a retry."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return InvalidRequest("an item id of this request is already used in this conversation; send "
                              "items without `id` to have new ids given", param="items")
    if isinstance(exc, psycopg.errors.DataError):
        return InvalidRequest(f"the items cannot be stored ({first_line(exc)}); remove NUL characters from "
                              "their text", param="items")
    return None


class Conversations:
    def __init__(self, table: ConversationTable, wait: DbWait) -> None:
        self.table, self.wait = table, wait

    async def _db(self, op: Awaitable[T]) -> T:
        return await self.wait.run(op, "conversations cannot be reached right now", refused=refused_items)

    async def create(self, key_id: str, metadata: dict[str, str], items: list[Body]) -> ConversationRow:
        row = ConversationRow(new_id("conv"), time.time(), key_id, metadata)
        await self._db(self.table.create(row, [item_row(i) for i in items]))
        return row

    async def get(self, conv: str, key_id: str) -> ConversationRow:
        row = await self._db(self.table.get(conv, key_id))
        if row is None:
            raise conversation_not_found(conv)
        return row

    async def update(self, conv: str, key_id: str, metadata: dict[str, str]) -> ConversationRow:
        row = await self._db(self.table.update(conv, key_id, metadata))
        if row is None:
            raise conversation_not_found(conv)
        return row

    async def delete(self, conv: str, key_id: str) -> None:
        if not await self._db(self.table.delete(conv, key_id)):
            raise conversation_not_found(conv)

    async def add(self, conv: str, key_id: str, items: list[Body]) -> list[ItemRow]:
        rows = [item_row(i) for i in items]
        if not await self._db(self.table.append(conv, key_id, rows)):
            raise conversation_not_found(conv)
        return rows

    async def page(self, conv: str, key_id: str, limit: int, descending: bool,
                   after: str | None) -> tuple[list[ItemRow], bool]:
        rows = await self._db(self.table.items(conv, key_id, after=after, descending=descending, limit=limit + 1))
        if rows is None:
            await self.get(conv, key_id)  # the conversation's 404 first
            raise InvalidRequest(f"query parameter 'after' names no item of conversation {conv!r}", param="after")
        return rows[:limit], len(rows) > limit

    async def item(self, conv: str, key_id: str, item_id: str) -> ItemRow:
        row = await self._db(self.table.item(conv, key_id, item_id))
        if row is None:
            await self.get(conv, key_id)
            raise item_not_found(conv, item_id)
        return row

    async def delete_item(self, conv: str, key_id: str, item_id: str) -> ConversationRow:
        if not await self._db(self.table.delete_item(conv, key_id, item_id)):
            await self.get(conv, key_id)
            raise item_not_found(conv, item_id)
        return await self.get(conv, key_id)

    async def history(self, conv: str, key_id: str) -> list[Body]:
        """The items a turn in `conv` sends before its own input, oldest first."""
        rows = await self._db(self.table.items(conv, key_id))
        if rows is None:
            raise conversation_not_found(conv)
        return [r.item for r in rows]

    async def append_turn(self, conv: str, key_id: str, own_input: list[Body], response: Body) -> None:
        """A finished turn's input and output items, in that order."""
        output = [i for i in response.get("output") or [] if isinstance(i, dict)]
        if not await self._db(self.table.append(conv, key_id, [item_row(i) for i in own_input + output])):
            raise conversation_not_found(conv)
