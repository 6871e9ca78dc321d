"""The README's quickstart, performed as written: its code blocks are parsed from README.md and run
with bash in a fresh working directory under a fresh HOME (so a real `shieldes serve` starts a real
embedded Postgres in `~/.local/share/shieldes`), the CLI steps from a second working directory.

What the test changes, and only this: `pip install` commands are skipped (this checkout is the
installed one), the node listens on a free port instead of 8080 (SHIELDES_PORT, and the SDK step's
URL), and api.openai.com is replaced by a local fake upstream answering to the key the shell has
in OPENAI_API_KEY. Afterwards: the node stopped the embedded Postgres it started, and `db url`,
`db stop` and a plain CLI call behave as the docs say.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from tests import pg
from tests.fake_upstream import FakeUpstream
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "sk-upstream-quickstart"


def quickstart_blocks(readme: str) -> list[str]:
    """The fenced bash blocks of the README's Quickstart section, in order."""
    section = readme.split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


class Env:
    def __init__(self, tmp: Path, port: int) -> None:
        self.home = tmp / "home"
        self.home.mkdir()
        shims = tmp / "bin"
        shims.mkdir()
        # `shieldes` and `python` as a user's shell finds them, running this checkout's code
        (shims / "shieldes").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m shieldes "$@"\n')
        (shims / "shieldes").chmod(0o755)
        # (a script, not a symlink: a symlinked venv interpreter does not find its venv's packages)
        (shims / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (shims / "python").chmod(0o755)
        self.vars = {
            "PATH": f"{shims}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.home),
            "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8",
            "SHIELDES_PORT": str(port),
            "SHIELDES_HOST": "127.0.0.1",
            "SHIELDES_GOSSIP_PORT": "0",
            "OPENAI_API_KEY": UPSTREAM_KEY,
        }
        if "TMPDIR" in os.environ:
            self.vars["TMPDIR"] = os.environ["TMPDIR"]

    def bash(self, script: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env={**self.vars, **extra},
                              capture_output=True, text=True, timeout=120)

    def cli(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["shieldes", *args], cwd=cwd, env=self.vars, capture_output=True, text=True,
                              timeout=120)


class Serve:
    """`shieldes serve` as the README starts it; stderr drained by a thread."""

    def __init__(self, env: Env, command: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env.vars,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.listening = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "listening on" in line:
                self.listening.set()
        self.listening.set()  # exited: stop waiting

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)




async def start_serve(env: Env, command: str, cwd: Path) -> Serve:
    """`shieldes serve` as the README starts it, listening or exited. A port free when picked can be
    taken before the node binds it (another process's outgoing connection, on 2 workers): then the
    node says so and exits, and it starts again on another free port (env's SHIELDES_PORT)."""
    for _ in range(3):
        serve = Serve(env, command, cwd)
        await asyncio.to_thread(serve.listening.wait, 90)
        if serve.proc.poll() is None or "address already in use" not in serve.log:
            break
        env.vars["SHIELDES_PORT"] = str(free_port())
    return serve


@pytest.mark.timeout(300)  # a dozen processes and three Postgres starts: slow on a loaded machine
async def test_readme_quickstart_in_a_fresh_home(fresh_home: Path) -> None:
    tmp_path = fresh_home
    blocks = quickstart_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 3, "the quickstart lost a step"
    start, setup, call = blocks[:3]
    port = free_port()
    env = Env(tmp_path, port)
    first, second = tmp_path / "project", tmp_path / "elsewhere"
    first.mkdir()
    second.mkdir()
    data_dir = env.home / ".local" / "share" / "shieldes"

    async with FakeUpstream(api_key=UPSTREAM_KEY, completion_tokens=3) as upstream:
        # 1. install (skipped), schema, serve: one line of `&&`-joined commands
        commands = [c.strip() for c in start.strip().split("&&")]
        assert commands[-1].startswith("shieldes serve")
        for command in commands[:-1]:
            if command.startswith("pip install"):
                continue
            done = await asyncio.to_thread(env.bash, command, first)
            assert done.returncode == 0, (command, done.stderr)
        assert not pg.postgres_running_under(env.home), "a CLI call left the embedded Postgres running"
        serve = await start_serve(env, commands[-1], first)
        port = int(env.vars["SHIELDES_PORT"])
        try:
            assert serve.proc.poll() is None, serve.log
            assert "MISSING: no providers yet" in serve.log and "shieldes provider add" in serve.log
            # where the console is and what turns it on (no token yet on a fresh machine)
            assert "admin API and console: off; set SHIELDES_ADMIN_TOKEN" in serve.log, serve.log
            assert "shieldes admin-token create --name NAME --role admin`, then open /ui/" in serve.log
            assert "initdb" not in serve.log and "Success. You can now start" not in serve.log, serve.log

            # 2. provider and key, from another folder: the same database is found
            script = setup.replace("https://api.openai.com/v1", f"{upstream.url}/v1")
            done = await asyncio.to_thread(env.bash, script + '\nprintf "\\nKEY=%s\\n" "$SHIELDES_KEY"\n', second)
            assert done.returncode == 0, done.stderr
            key = done.stdout.strip().splitlines()[-1].removeprefix("KEY=")
            assert key.startswith("sk-shd-")
            key_file = data_dir / "encryption.key"
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

            # 3. the official SDK through the node: a 200 (the SDK raises otherwise)
            script = call.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            done = await asyncio.to_thread(env.bash, script, second, SHIELDES_KEY=key)
            assert done.returncode == 0, (done.stderr, serve.log)
            assert done.stdout.strip() == "Hello from the"
            sent = upstream.last("/v1/chat/completions")
            assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # decrypted on the node

            # the examples run against this state as they are (only the URL names the free port)
            for example in ("openai_chat.py", "openai_stream.py", "anthropic_messages.py", "curl.sh"):
                runner = "bash" if example.endswith(".sh") else "python"
                done = await asyncio.to_thread(env.bash, f"{runner} {ROOT / 'examples' / example}", second,
                                               SHIELDES_KEY=key, SHIELDES_URL=f"http://127.0.0.1:{port}")
                assert done.returncode == 0, (example, done.stdout, done.stderr)

            # the CLI from either folder sees the same key and the running node
            for folder in (first, second):
                listed = await asyncio.to_thread(env.cli, folder, "key", "list", "--json")
                assert [k["name"] for k in json.loads(listed.stdout)] == ["my-app"], listed.stderr
            status = json.loads((await asyncio.to_thread(env.cli, second, "db", "status", "--json")).stdout)
            assert status["running"] and any(u["role"].startswith("serve") for u in status["users"])
            # and the doctor finds nothing to fix (the node publishes the local key's fingerprint)
            doctor = await asyncio.to_thread(env.cli, second, "doctor", "--json")
            assert doctor.returncode == 0, doctor.stdout
        finally:
            code = await asyncio.to_thread(serve.stop)
    assert code == 0, serve.log

    # the node started the embedded Postgres, so it stopped it on exit
    assert not pg.postgres_running_under(env.home), serve.log
    # `db url` starts it for psql and psycopg and keeps it up; `db stop` stops it
    url = await asyncio.to_thread(env.cli, second, "db", "url")
    assert url.returncode == 0, url.stderr
    with psycopg.connect(url.stdout.strip()) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log WHERE type = 'virtual_key.created'").fetchone() == (1,)
    stopped = await asyncio.to_thread(env.cli, first, "db", "stop", "--json")
    assert json.loads(stopped.stdout)["stopped"] is True, stopped.stderr
    assert not pg.postgres_running_under(env.home)
    # a CLI call with no node running leaves nothing behind
    listed = await asyncio.to_thread(env.cli, first, "key", "list", "--json")
    assert listed.returncode == 0 and not pg.postgres_running_under(env.home), listed.stderr
