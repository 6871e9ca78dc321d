"""All SQL on the `conversations` and `conversation_items` tables. Every statement checks the
conversation's key in the same statement, so another key's conversation reads as absent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orjson import dumps
from psycopg_pool import AsyncConnectionPool

from shieldes.responses.objects import Body


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: str
    created_at: float  # unix seconds
    key_id: str
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: str
    item: Body  # as it is sent upstream: the client's or the upstream's own item, its id not added


_OWNED = "EXISTS (SELECT 1 FROM conversations WHERE id = %(conv)s AND key_id = %(key)s)"


def _conversation(r: Sequence[Any]) -> ConversationRow:
    created: dt.datetime = r[1]
    return ConversationRow(r[0], created.timestamp(), r[2], dict(r[3]))


class ConversationTable:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def create(self, row: ConversationRow, items: Sequence[ItemRow]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO conversations (id, created_at, key_id, metadata) VALUES (%s, to_timestamp(%s), %s, %s)",
                (row.id, row.created_at, row.key_id, dumps(row.metadata).decode()),
            )
            if items:
                await conn.execute(*self._append(row.id, row.key_id, items))

    @staticmethod
    def _append(conv: str, key: str, items: Sequence[ItemRow]) -> tuple[str, dict[str, Any]]:
        # ordinality keeps the items' order in the identity column; an item id already in the
        # conversation (an item sent again) is not added twice
        return (
            "INSERT INTO conversation_items (conversation_id, id, created_at, item) "
            "SELECT %(conv)s, t.id, now(), t.item::jsonb "
            "FROM unnest(%(ids)s::text[], %(items)s::text[]) WITH ORDINALITY AS t(id, item, n) "
            f"WHERE {_OWNED} ORDER BY t.n "
            "ON CONFLICT (conversation_id, id) DO NOTHING",
            {"conv": conv, "key": key, "ids": [i.id for i in items],
             "items": [dumps(i.item).decode() for i in items]},
        )

    async def append(self, conv: str, key: str, items: Sequence[ItemRow]) -> bool:
        """False when the conversation is not the key's (or is gone)."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(f"SELECT {_OWNED}", {"conv": conv, "key": key})
            row = await cur.fetchone()
            if row is None or not row[0]:
                return False
            await conn.execute(*self._append(conv, key, items))
        return True

    async def get(self, conv: str, key: str) -> ConversationRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, created_at, key_id, metadata FROM conversations WHERE id = %s AND key_id = %s",
                (conv, key))
            row = await cur.fetchone()
        return _conversation(row) if row is not None else None

    async def update(self, conv: str, key: str, metadata: dict[str, str]) -> ConversationRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE conversations SET metadata = %s WHERE id = %s AND key_id = %s "
                "RETURNING id, created_at, key_id, metadata",
                (dumps(metadata).decode(), conv, key))
            row = await cur.fetchone()
        return _conversation(row) if row is not None else None

    async def delete(self, conv: str, key: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM conversations WHERE id = %s AND key_id = %s", (conv, key))
            return bool(cur.rowcount > 0)

    async def items(self, conv: str, key: str, *, after: str | None = None, descending: bool = False,
                    limit: int | None = None) -> list[ItemRow] | None:
        """The conversation's items in order (after the item `after`, at most `limit`); None when
        the conversation is not the key's, or `after` names none of its items."""
        direction, cmp = ("DESC", "<") if descending else ("ASC", ">")
        params: dict[str, Any] = {"conv": conv, "key": key, "after": after, "limit": limit}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_OWNED}, %(after)s::text IS NULL OR EXISTS (SELECT 1 FROM conversation_items "
                "WHERE conversation_id = %(conv)s AND id = %(after)s)", params)
            found = await cur.fetchone()
            if found is None or not (found[0] and found[1]):
                return None
            cur = await conn.execute(
                "SELECT id, item FROM conversation_items WHERE conversation_id = %(conv)s "
                f"AND (%(after)s::text IS NULL OR seq {cmp} (SELECT seq FROM conversation_items "
                "WHERE conversation_id = %(conv)s AND id = %(after)s)) "
                f"ORDER BY seq {direction} LIMIT %(limit)s", params)
            rows = await cur.fetchall()
        return [ItemRow(r[0], dict(r[1])) for r in rows]

    async def item(self, conv: str, key: str, item_id: str) -> ItemRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT id, item FROM conversation_items WHERE conversation_id = %(conv)s AND id = %(item)s "
                f"AND {_OWNED}", {"conv": conv, "key": key, "item": item_id})
            row = await cur.fetchone()
        return ItemRow(row[0], dict(row[1])) if row is not None else None

    async def delete_item(self, conv: str, key: str, item_id: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"DELETE FROM conversation_items WHERE conversation_id = %(conv)s AND id = %(item)s AND {_OWNED}",
                {"conv": conv, "key": key, "item": item_id})
            return bool(cur.rowcount > 0)
