"""Upstream names resolved once per TTL, with the system resolver (localhost from /etc/hosts): a
burst of new connections asks once, a refused address is looked up again, IP literals never."""

from __future__ import annotations

import asyncio

from shieldes.providers.resolver import Resolver
from shieldes.providers.transport import UpstreamClient
from shieldes.providers.upstream_connection import Timeouts
from tests.fake_upstream import FakeUpstream


async def test_concurrent_lookups_share_one_and_the_answer_is_kept_for_its_ttl() -> None:
    now = [0.0]
    resolver = Resolver(ttl=10.0, clock=lambda: now[0])
    answers = await asyncio.gather(*(resolver.addresses("localhost", 80) for _ in range(20)))
    assert resolver.lookups == 1 and len(set(answers)) == 1 and answers[0]
    now[0] = 9.9
    await resolver.addresses("localhost", 80)
    assert resolver.lookups == 1
    now[0] = 10.1
    await resolver.addresses("localhost", 80)
    assert resolver.lookups == 2
    resolver.forget("localhost", 80)
    await resolver.addresses("localhost", 80)
    assert resolver.lookups == 3
    assert await resolver.addresses("127.0.0.1", 80) == ((2, "127.0.0.1"),) and resolver.lookups == 3


async def test_a_failed_lookup_is_not_kept() -> None:
    resolver = Resolver()
    for _ in range(2):
        try:
            await resolver.addresses("no-such-host.invalid", 80)
        except OSError:
            pass
        else:
            raise AssertionError("an .invalid name resolved")
    assert resolver.lookups == 2


async def test_a_burst_of_new_upstream_connections_resolves_the_name_once() -> None:
    async with FakeUpstream(completion_tokens=2, api_key=None) as up, UpstreamClient() as client:
        url = up.url.replace("127.0.0.1", "localhost") + "/v1/chat/completions"
        body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'

        async def one() -> int:
            resp = await client.post(url, body, {"Content-Type": "application/json"}, Timeouts(connect=5, total=30))
            await resp.read()
            return resp.status

        assert await asyncio.gather(*(one() for _ in range(20))) == [200] * 20
        assert client.resolver.lookups == 1
