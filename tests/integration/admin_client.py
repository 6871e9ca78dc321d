"""A small HTTP client for the admin API in tests (real HTTP through aiohttp)."""

from __future__ import annotations

from typing import Any

import aiohttp


class AdminClient:
    def __init__(self, base: str, token: str | None) -> None:
        self.base = base.rstrip("/")
        self.token = token

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                   headers: dict[str, str] | None = None, **params: Any) -> tuple[int, Any]:
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        async with aiohttp.ClientSession() as s, s.request(
            method, self.base + path, json=body, headers=h, params={k: str(v) for k, v in params.items()}
        ) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **params)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", path, body, **kw)
