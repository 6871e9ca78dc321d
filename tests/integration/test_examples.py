"""Every example runs as a user would run it, against a live node (real HTTP, real Postgres) in
front of the fake upstream: the Python SDK examples, curl.sh, and the shell setup scripts."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shieldes.cli.main import cli
from tests.integration.gateway_harness import Harness, harness

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[Harness]:
    async with harness(database_url) as h:
        yield h


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


async def run(*argv: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        tail = err.decode()[-2000:]
        raise AssertionError(f"{' '.join(argv)} did not finish in {timeout}s; stderr: {tail}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_example(h: Harness, key: str, script: str, model: str) -> tuple[int, str, str]:
    env = clean_env(SHIELDES_URL=h.base, SHIELDES_KEY=key, SHIELDES_MODEL=model)
    return await run(sys.executable, str(EXAMPLES / script), env=env)


async def test_python_examples_run_and_are_accounted(live: Harness) -> None:
    key = await live.create_key("examples")
    await live.sync()
    runs = [
        ("openai_chat.py", "gpt-4o-mini", "completion tokens]"),
        ("openai_stream.py", "gpt-4o-mini", "completion tokens]"),
        ("openai_tools.py", "gpt-4o", "[tool call] get_weather"),
        ("anthropic_messages.py", "claude-3-5-haiku-latest", "output tokens]"),
        ("anthropic_messages.py", "gpt-4o-mini", "output tokens]"),  # Anthropic SDK -> OpenAI model
    ]
    results = await asyncio.gather(*(run_example(live, key, s, m) for s, m, _ in runs))
    for (script, model, expected), (code, out, err) in zip(runs, results, strict=True):
        assert code == 0, f"{script} ({model}) failed: {err}"
        assert expected in out, f"{script} ({model}) printed: {out!r}"
        assert "Hello" in out or "[tool call]" in out  # the fake upstream's reply came through
    await live.flush()
    requests, prompt, completion, _ = live.usage_totals()["examples"]
    assert requests == 6  # the tools example makes two calls
    assert prompt > 0 and completion > 0


async def test_example_with_a_bad_key_fails_with_one_line(live: Harness) -> None:
    code, out, err = await run_example(live, "sk-shd-not-a-key", "openai_chat.py", "gpt-4o-mini")
    assert code == 1 and out == ""
    assert err.startswith("error: HTTP 401 invalid_api_key:") and err.count("\n") == 1
    code, _, err = await run(sys.executable, str(EXAMPLES / "openai_chat.py"), env=clean_env())
    assert code == 1 and "set SHIELDES_KEY" in err


async def test_curl_script(live: Harness) -> None:
    key = await live.create_key("curl")
    await live.sync()
    env = clean_env(SHIELDES_URL=live.base, SHIELDES_KEY=key,
                    SHIELDES_ANTHROPIC_MODEL="claude-3-5-haiku-latest")
    code, out, err = await run("bash", str(EXAMPLES / "curl.sh"), env=env)
    assert code == 0, err
    assert '"status":"ready"' in out and "data: [DONE]" in out
    assert '"object":"list"' in out and '"type":"message"' in out
    assert "invalid_api_key" in out and "HTTP 401" in out


def _free_base_port(n: int) -> int:
    """A port p such that p .. p+n-1 are free now (the scripts use consecutive ports), below the
    kernel's ephemeral range: a port in that range can be handed to any connection a parallel test
    opens between this check and the scripts' binds."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(10000, max(10001, low - n))
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no free port range")


@pytest.mark.skipif("provider" not in cli.commands, reason="needs the admin CLI (provider/key/team commands)")
async def test_admin_script(database_url: str) -> None:
    env = clean_env(SHIELDES_DATABASE_URL=database_url, SHIELDES_BIN=f"{sys.executable} -m shieldes")
    code, out, err = await run("bash", str(EXAMPLES / "admin.sh"), env=env, timeout=120)
    assert code == 0, err
    assert '"key": "sk-shd-' in out


async def test_local_cluster_script_starts_three_ready_nodes_and_stops_them(database_url: str,
                                                                            tmp_path: Path) -> None:
    http = _free_base_port(6)  # one pick for both ranges: two picks may overlap
    gossip = http + 3
    env = clean_env(SHIELDES_DATABASE_URL=database_url, SHIELDES_BIN=f"{sys.executable} -m shieldes",
                    BASE_PORT=str(http), BASE_GOSSIP=str(gossip))
    logged = tmp_path / "stderr"  # (a file, not a pipe: three nodes' logs would fill a pipe nobody reads)
    with logged.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            "bash", str(EXAMPLES / "local_cluster.sh"), cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=stderr, start_new_session=True,
        )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not any(line.startswith("cluster up") for line in lines):
            line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
            assert line, f"script ended early: {lines}; its stderr ends: {logged.read_text()[-3000:]}"
            lines.append(line)
        assert [ln.split()[0] for ln in lines if "ready on" in ln] == ["node-1", "node-2", "node-3"]
        for port in range(http, http + 3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
        proc.send_signal(signal.SIGTERM)  # the script's trap stops the nodes gracefully
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    for port in range(http, http + 3):
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_dockerfile_healthcheck_command_probes_health(live: Harness) -> None:
    """The image's HEALTHCHECK is a python one-liner: run it as Docker would, against a live node."""
    import json
    import re

    text = (ROOT / "deploy" / "Dockerfile").read_text()
    found = re.search(r"^HEALTHCHECK .*\\\n\s*CMD (\[.*\])$", text, re.M)
    assert found is not None
    argv = json.loads(found[1])
    code, _, err = await run(*argv, env=clean_env(SHIELDES_PORT=str(live.node.port)))
    assert code == 0, err
    code, _, _ = await run(*argv, env=clean_env(SHIELDES_PORT=str(_free_base_port(1))))
    assert code != 0
