"""What a user meets from the outside, through the official SDKs and raw HTTP against a real node:
each header style a client sends its key in, request bodies in encodings the node cannot read,
an upstream answering a web page where an event stream belongs, and the errors of unknown admin
routes and wrong methods, always in the API's own shape."""

from __future__ import annotations

import gzip

import aiohttp
import anthropic
import openai
import pytest

from shieldes.projections.commands import RevokeKey
from tests.integration.gateway_harness import harness

MSGS = [{"role": "user", "content": "hello there"}]
BOOT = "boot-" + "admin-token-for-outside-in-tests"


async def test_admin_bodies_in_encodings_the_node_cannot_read_get_a_400(database_url: str) -> None:
    async with harness(database_url, admin_token=BOOT) as h, aiohttp.ClientSession() as s:
        auth = {"Authorization": f"Bearer {BOOT}", "Content-Type": "application/json"}
        body = b'{"name": "zipped"}'
        for encoding, data, fragment in (("gzip", body, "not valid gzip data"),
                                         ("deflate", body, "not valid deflate data"),
                                         ("gzip", gzip.compress(body)[:-6], "not valid gzip data"),
                                         ("br", body, "Content-Encoding 'br' is not supported"),
                                         ("zstd", body, "Content-Encoding 'zstd' is not supported")):
            async with s.post(h.base + "/admin/v1/keys", data=data,
                              headers={**auth, "Content-Encoding": encoding}) as r:
                got = await r.json()
                assert r.status == 400, (encoding, got)
                assert got["error"]["code"] == "invalid_request" and fragment in got["error"]["message"], got
        async with s.post(h.base + "/admin/v1/keys", data=gzip.compress(body),
                          headers={**auth, "Content-Encoding": "gzip"}) as r:
            assert r.status == 201 and (await r.json())["name"] == "zipped"
        bomb = gzip.compress(b'{"name": "' + b"x" * (h.settings.max_body_bytes + 10) + b'"}')
        async with s.post(h.base + "/admin/v1/keys", data=bomb, headers={**auth, "Content-Encoding": "gzip"}) as r:
            assert r.status == 413 and (await r.json())["error"]["code"] == "request_too_large"
        assert h.sql("SELECT count(*) FROM events WHERE type = 'virtual_key.created'")[0][0] == 1

