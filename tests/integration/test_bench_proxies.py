"""The benchmark's baselines work: bench/bench_gateway.py's bare proxies (aiohttp's client, and
the node's own upstream client with --lean) forward a JSON answer and whole event streams (chat
completions, the Responses API) from the fake upstream. A broken baseline would make every ratio
in docs/benchmarks.md meaningless."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.fake_upstream import FakeUpstream
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "say hello"}]}




def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on 127.0.0.1:`port` (state 0A in /proc/net/tcp)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return {f[9] for f in (line.split() for line in lines)
            if f[1] == f"0100007F:{port:04X}" and f[3] == "0A"}


def holds_a_socket(pid: int, inodes: set[str]) -> bool:
    wanted = {f"socket:[{i}]" for i in inodes}
    try:
        return any(os.readlink(fd) in wanted for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # gone, or an fd closed while listed
        return False


async def until_listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    """Until the proxy (or a process it started) listens on `port`: a connection alone could reach
    another test's process that took the port between free_port() and the proxy's bind. False when
    the proxy exited first (that port was taken: the caller starts it again on another)."""
    for _ in range(400):
        if proc.poll() is not None:
            return False
        inodes = listening_inodes(port)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if inodes and any(holds_a_socket(pid, inodes) for pid in (proc.pid, *map(int, children))):
            return True
        await asyncio.sleep(0.025)
    raise AssertionError("the proxy never listened")


async def start_proxy(upstream: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bench_gateway.py"), "proxy", "--port",
                                 str(port), "--upstream", upstream, *extra], cwd=ROOT)
        if await until_listening(port, proc):
            return proc, port
    raise AssertionError(f"the proxy exited three times (exit status {proc.returncode})")


@pytest.mark.parametrize("extra", [[], ["--lean"], ["--procs", "2"]],
                         ids=["aiohttp-client", "node-client", "two-processes"])
async def test_bare_proxy_forwards_json_and_streams(extra: list[str]) -> None:
    """`--procs 2` is the bare proxy `bench_gateway.py --workers 2` sets beside the node's workers,
    supervised as `serve --workers` supervises them."""
    async with FakeUpstream(completion_tokens=5) as upstream:
        proc, port = await start_proxy(upstream.url, extra)
        try:
            if "--procs" in extra:  # the supervisor holds its two proxies, each a process of its own
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                assert len(children) == 2, children
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            async with aiohttp.ClientSession() as session:
                async with session.post(url, json=CHAT) as resp:
                    assert resp.status == 200
                    answer = await resp.json(content_type=None)
                assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
                async with session.post(url, json={**CHAT, "stream": True}) as resp:
                    assert resp.status == 200
                    body = await resp.read()
                events = [e for e in body.split(b"\n\n") if e]
                assert events[-1] == b"data: [DONE]" and len(events) > 3
                responses = f"http://127.0.0.1:{port}/v1/responses"
                async with session.post(responses, json={"model": "gpt-4o", "input": "hi", "stream": True}) as resp:
                    assert resp.status == 200 and resp.content_type == "text/event-stream"
                    body = await resp.read()
            names = [e.split(b"\n", 1)[0] for e in body.split(b"\n\n") if e]
            assert names[:4] == [b"event: response.created", b"event: response.in_progress",
                                 b"event: response.output_item.added", b"event: response.content_part.added"]
            assert names.count(b"event: response.output_text.delta") == 5
            assert names[-1] == b"event: response.completed" and b'"output_tokens":5' in body.rsplit(b"\n\n", 2)[-2]
        finally:
            proc.terminate()
            proc.wait(10)  # (a supervisor exits once its proxies have stopped)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # no proxy process left serving


@pytest.mark.parametrize("generator", ["wrk", "python"])
async def test_paced_load_stays_below_its_rate(generator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--moderate-rate`: each connection pauses between requests, so the load is the rate asked
    for, not what the machine can serve back to back."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_gateway

    if generator == "wrk" and bench_gateway.shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    if generator == "python":
        monkeypatch.setattr(bench_gateway.shutil, "which", lambda _name: None)
    async with FakeUpstream(completion_tokens=5) as upstream:
        url = f"{upstream.url}/v1/chat/completions"
        back_to_back = await asyncio.to_thread(bench_gateway.load, url, CHAT, None, 1, 2)
        paced = await asyncio.to_thread(bench_gateway.load, url, CHAT, None, 1, 2, None, 100.0)
    assert paced.errors == 0 and back_to_back.errors == 0
    assert paced.rps <= 21, paced  # 2 connections, 100 ms apart: at most 20 requests a second
    assert back_to_back.rps > 3 * paced.rps, (back_to_back, paced)


def test_each_rounds_ratio_is_reported_beside_their_median(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `--repeat N` the report lists the node's CPU against the bare proxy's round by round:
    one ratio of medians hides how far a single round can move."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_gateway

    line = bench_gateway.round_by_round("stream", "the bare proxy's", [520.0, 600.0, 450.0], [400.0, 500.0, 450.0])
    assert line == ("stream: node CPU per request against the bare proxy's, round by round: 1.30x, 1.20x, 1.00x "
                    "(median 1.20x, spread 0.30)")
    with pytest.raises(ValueError):  # a round without its pair is a bug in the bench, not a figure
        bench_gateway.round_by_round("json", "the bare proxy's", [1.0, 2.0], [1.0])


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}),
    ("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True,
                      "messages": [{"role": "user", "content": "say hello"}]}),
    ("/v1/responses", {"model": "gpt-4o", "stream": True, "input": "say hello"}),
], ids=["chat", "messages", "responses"])
async def test_token_delay_paces_the_text_frames_of_every_api(path: str, body: dict[str, object]) -> None:
    """`bench_gateway.py --token-delay`: the fake upstream waits before each frame carrying generated
    text (so each reaches a proxy in a read of its own), and not before the frames around them."""
    delay = 0.15
    text = {"/v1/chat/completions": b'"delta":{"content":"', "/v1/messages": b'"type":"text_delta"',
            "/v1/responses": b'"type":"response.output_text.delta"'}[path]
    async with FakeUpstream(completion_tokens=3) as upstream:
        upstream.inject(path, token_delay=delay, times=None)
        loop = asyncio.get_running_loop()
        arrivals: list[tuple[float, bytes]] = []  # each data line's time since the request was sent
        async with aiohttp.ClientSession() as session:
            start = loop.time()
            headers = {"anthropic-version": "2023-06-01"}
            async with session.post(upstream.url + path, json=body, headers=headers) as resp:
                async for line in resp.content:  # one line at a time, as it arrives
                    if line.startswith(b"data: "):
                        arrivals.append((loop.time() - start, line))
    tokens = [at for at, line in arrivals if text in line]
    assert len(tokens) == 3, arrivals
    # each token waited its own delay (a busy machine only makes them later)...
    assert all(at >= (k + 1) * delay * 0.99 for k, at in enumerate(tokens)), arrivals
    # ...and the frames around them did not: had each waited, the stream would take this long at least
    assert len(arrivals) > 3 and arrivals[-1][0] < len(arrivals) * delay, arrivals


TEXT_DELTA = {"/v1/chat/completions": '"delta":{"content":"', "/v1/messages": '"type":"text_delta"',
              "/v1/responses": "event: response.output_text.delta"}  # one per token streamed


async def test_per_read_modes_cap_each_api_at_its_token_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--per-read LOW,HIGH`: every stream mode runs twice, its body capping the stream at LOW and
    at HIGH tokens in the field its API reads (a wrong field would stream the same length twice
    and make the slope 0), and JSON modes are left out."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_gateway as bg

    modes = [("json", bg.BODY, bg.CHAT_PATH), ("stream", {**bg.BODY, "stream": True}, bg.CHAT_PATH),
             ("messages-stream", {**bg.MESSAGES_BODY, "stream": True}, bg.MESSAGES_PATH),
             ("responses-stream", bg.RESPONSES_BODY, bg.RESPONSES_PATH)]
    split = bg.per_read_modes(modes, 2, 5)
    assert [m for m, _, _ in split] == ["stream@2", "stream@5", "messages-stream@2", "messages-stream@5",
                                        "responses-stream@2", "responses-stream@5"]
    async with FakeUpstream(completion_tokens=5) as upstream, aiohttp.ClientSession() as session:
        for mode, body, path in split:
            async with session.post(upstream.url + path, json=body, headers=bg.ANTHROPIC_VERSION) as resp:
                text = await resp.text()
            tokens = text.count(TEXT_DELTA[path])
            assert tokens == int(mode.rpartition("@")[2]), (mode, text)


def test_per_read_runs_the_short_streams_from_fewer_connections_at_the_same_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Paced, a stream of 4 tokens lasts about a twentieth of one of 84: from 32 connections it would
    run twenty times as many streams a second, and the node's per-second work would fall on more
    of them than at 84 tokens, tilting the slope. The short ones run from 32 x 4 / 84 connections."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_gateway as bg

    assert bg.connections_for("stream@4", 32, 4, 84, True) == 2
    assert bg.connections_for("stream@84", 32, 4, 84, True) == 32
    assert bg.connections_for("stream@4", 32, 4, 84, False) == 32  # frames back to back: no pacing to match
    assert bg.connections_for("responses-stream@1", 8, 1, 100, True) == 1  # never none


def test_per_read_line_splits_a_streams_cpu_into_once_and_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_gateway as bg

    cpu = {("stream@4", "node"): 1000.0, ("stream@84", "node"): 5800.0,  # 60 us a token
           ("stream@4", "bare"): 800.0, ("stream@84", "bare"): 5600.0,
           ("stream@4", "lean"): 500.0, ("stream@84", "lean"): 4100.0}
    line = bg.per_read_line("stream", 4, 84, cpu, "node", "bare", "lean")
    assert line == ("stream: per stream of 4 tokens node 1000 us, bare proxy 800 (1.25x), bare proxy on the "
                    "node's client 500; per token beyond: node 60.0 us, bare proxy 60.0 (1.00x), bare proxy "
                    "on the node's client 45.0")
