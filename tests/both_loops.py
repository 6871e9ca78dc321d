"""A fixture that runs each test of a module that imports it on both event loops: nodes run on
uvloop, whose transports (TLS included) read for the front (a buffered protocol) in code of their
own, and tests default to asyncio's."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(params=["asyncio", "uvloop"], autouse=True)
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if request.param == "uvloop":
        import uvloop

        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()
