"""What real clients show when the gateway says no: refusals and upstream failures.

Runs each client (Claude Code `claude -p`, Codex `codex exec` with a custom provider and with its
built-in provider on the Responses WebSocket, Gemini CLI `gemini -p` on the Gemini API, OpenCode
`opencode run` with an OpenAI-compatible provider, the openai and anthropic Python SDKs, the OpenAI
Agents SDK) against a real node and the fake upstream in each
situation below, and prints what the user saw: the client's last lines, its exit status, the
requests it made to the node, and the time taken.

  budget     a key whose budget is spent            429 budget_exceeded (x-should-retry: false)
  rpm        a key with --rpm 1, already used       429 rate_limit_exceeded with Retry-After
  revoked    a revoked key                          401
  wrong-key  a key the node never issued            401
  denied     a key limited to another model         403 model_not_allowed
  unknown    a model nobody serves                  404 model_not_found
  5xx        the upstream answers 500 to everything 502 after the node's retries
  cut        the upstream stream breaks mid-answer  an error event in the stream

A client passes a situation when it exits non-zero (or, for `rpm`, answers after waiting), its
output holds the gateway's message (the part saying what to do), it made no more requests than its
retry rules allow for that error, and it ended within the time limit.

Run: python bench/compat.py --errors [--prefix DIR] [--only claude,codex,gemini,opencode,python]
(or this file with --situations budget,rpm,...); the Python clients run on the running interpreter,
which needs openai, anthropic and openai-agents. Prints one line per client and situation.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.compat import free_port, wait_ready

# situation -> words of the gateway's message the user must see ("" for `rpm`: it must answer after
# waiting, and for `cut`: a client may answer from its own retry)
SITUATIONS = {
    "budget": "budget", "rpm": "", "revoked": "revoked", "wrong-key": "invalid", "denied": "may not use",
    "unknown": "not served", "5xx": "upstream", "cut": "",
}
TIMEOUT = 240.0  # Claude Code's ten retries of a 5xx take about three minutes
MODEL_ROUTES = re.compile(r"/(messages|responses|completions)|:(generateContent|streamGenerateContent)")
GEMINI_MODEL = "gemini-2.5-flash"  # what `gemini -m` asks for, served by the fake OpenAI upstream

PY_OPENAI = """
import openai, sys
c = openai.OpenAI(base_url=URL + "/v1", api_key=KEY)
try:
    if STREAM:
        text = "".join(e.delta for e in c.responses.create(model=MODEL, input="hi", stream=True)
                       if e.type == "response.output_text.delta")
    else:
        text = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}]
                                         ).choices[0].message.content
    print("answer:", text)
except openai.APIError as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
"""
PY_ANTHROPIC = """
import anthropic, sys
c = anthropic.Anthropic(base_url=URL, api_key=KEY)
try:
    args = dict(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    if STREAM:
        with c.messages.stream(**args) as s:
            text = s.get_final_text()
    else:
        text = c.messages.create(**args).content[0].text
    print("answer:", text)
except anthropic.APIError as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
"""
PY_AGENTS = """
import sys
from agents import Agent, Runner, set_default_openai_client, set_tracing_disabled
from openai import AsyncOpenAI
set_tracing_disabled(True)
set_default_openai_client(AsyncOpenAI(base_url=URL + "/v1", api_key=KEY))
try:
    print("answer:", Runner.run_sync(Agent(name="a", instructions="Be brief.", model=MODEL), "hi").final_output)
except Exception as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
"""


@dataclass
class Seen:
    client: str
    situation: str
    code: int
    seconds: float
    requests: int  # requests the client made to the node (its access lines)
    statuses: str
    said: str  # the client's last output lines
    output: str = ""  # all of it: Gemini CLI prints the node's message above a long stack trace

    def verdict(self) -> str:
        """HANG: still running at the time limit; FAIL: a refusal answered (or a rate limit not waited
        out); HIDDEN: the gateway's message did not reach the user; else PASS (the requests made are
        reported, not judged: each client retries by its own rules)."""
        want = SITUATIONS[self.situation]
        if self.code == -1:
            return "HANG"
        if self.situation == "rpm":
            return "PASS" if self.code == 0 else "FAIL"
        if self.code == 0 and self.situation != "cut":
            return "FAIL"
        return "HIDDEN" if want and want not in (self.output or self.said).lower() else "PASS"


def access_lines(log: Path, since: int) -> list[dict[str, object]]:
    """The node's access lines (JSON log format) after line `since`, for the model API routes."""
    out = []
    for line in log.read_bytes().decode(errors="replace").splitlines()[since:]:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("logger") == "shieldes.access" and MODEL_ROUTES.search(str(rec.get("path"))):
            out.append(rec)
    return out


async def run_client(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        code = proc.returncode or 0
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        code = -1
    return code, out.decode(errors="replace"), time.monotonic() - t0


def speaks(client: str) -> str:
    """The model family a client asks for: Claude (Claude Code, the anthropic SDK), Gemini (Gemini
    CLI) or GPT."""
    return "claude" if client in ("claude", "anthropic-sdk") else "gemini" if client == "gemini" else "gpt"


def client_cmds(bin_dir: Path, work: Path, node: str, key: str, model: str, stream: bool,
                label: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one client run."""
    home = work / f"home-{label}"
    home.mkdir(parents=True, exist_ok=True)
    base = {k: os.environ[k] for k in ("PATH", "LANG", "TERM", "TMPDIR") if k in os.environ}
    base |= {"HOME": str(home), "NO_COLOR": "1"}
    client = label.split("@")[0]
    if client == "claude":
        env = {**base, "ANTHROPIC_BASE_URL": node, "ANTHROPIC_API_KEY": key, "ANTHROPIC_MODEL": model,
               "ANTHROPIC_SMALL_FAST_MODEL": model}
        return [str(bin_dir / "claude"), "-p", "Reply with PONG."], env
    if client.startswith("codex"):
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        builtin = client == "codex-builtin"
        provider = f'openai_base_url = "{node}/v1"\n' if builtin else (
            'model_provider = "shieldes"\n\n[model_providers.shieldes]\nname = "shieldes"\n'
            f'base_url = "{node}/v1"\nenv_key = "SHIELDES_KEY"\nwire_api = "responses"\n')
        (codex_home / "config.toml").write_text(f'model = "{model}"\n' + provider)
        env = {**base, "CODEX_HOME": str(codex_home), "SHIELDES_KEY": key}
        if builtin:
            subprocess.run([str(bin_dir / "codex"), "login", "--with-api-key"], env=env, input=key.encode(),
                           capture_output=True, check=False)
        return [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", "Reply with PONG."], env
    if client == "gemini":  # the Gemini API key sign-in takes the base URL (bench/compat.py's gemini_cli)
        (home / ".gemini").mkdir(parents=True, exist_ok=True)
        (home / ".gemini" / "settings.json").write_text(json.dumps(
            {"security": {"auth": {"selectedType": "gemini-api-key"}}}))
        env = {**base, "GOOGLE_GEMINI_BASE_URL": node, "GEMINI_API_KEY": key, "GEMINI_CLI_TRUST_WORKSPACE": "true"}
        return [str(bin_dir / "gemini"), "-m", model, "-p", "Reply with PONG."], env
    if client == "opencode":  # an OpenAI-compatible provider (bench/compat.py's opencode)
        config = home / "opencode.json"
        config.write_text(json.dumps({"provider": {"shieldes": {
            "npm": "@ai-sdk/openai-compatible", "name": "shieldes", "models": {model: {"name": model}},
            "options": {"baseURL": node + "/v1", "apiKey": key}}}, "model": f"shieldes/{model}",
            "small_model": f"shieldes/{model}", "autoupdate": False, "share": "disabled"}))
        return [str(bin_dir / "opencode"), "run", "Reply with PONG."], {**base, "OPENCODE_CONFIG": str(config)}
    code = {"openai-sdk": PY_OPENAI, "anthropic-sdk": PY_ANTHROPIC, "agents-sdk": PY_AGENTS}[client]
    script = home / "client.py"
    script.write_text(f"URL = {node!r}\nKEY = {key!r}\nMODEL = {model!r}\nSTREAM = {stream!r}\n" + code)
    return [sys.executable, str(script)], {**base, "PYTHONPATH": ""}


CLIENTS = ("claude", "codex", "codex-builtin", "gemini", "opencode", "openai-sdk", "anthropic-sdk", "agents-sdk")


def wanted(client: str, only: set[str]) -> bool:
    return client in only or client.split("-")[0] in only or ("python" in only and client.endswith("sdk"))


def shieldes(env: dict[str, str], *args: str) -> object:
    out = subprocess.run([sys.executable, "-m", "shieldes", "--json", *args], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout) if out.stdout.strip() else None


def make_key(env: dict[str, str], situation: str, name: str) -> str:
    """A key in the state `situation` needs."""
    if situation == "wrong-key":
        return "sk-shd-" + os.urandom(16).hex()
    extra = {"budget": ["--budget", "0.000001"], "rpm": ["--rpm", "1"], "denied": ["--models", "gpt-4o-mini"]}
    key = str(shieldes(env, "key", "create", "--name", name, *extra.get(situation, []))["key"])  # type: ignore[index]
    if situation == "revoked":
        shieldes(env, "key", "revoke", name)
    return key


async def use_once(node: str, key: str) -> None:
    """Spend an rpm-1 key's one request."""
    import aiohttp
    async with aiohttp.ClientSession() as http, http.post(
            node + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}) as resp:
        await resp.read()


async def probe(bin_dir: Path, work: Path, node: str, env: dict[str, str], log: Path, situation: str,
                only: set[str]) -> list[Seen]:
    """Every client in one situation, concurrently, each with its own key (its name tells its requests apart)."""
    runs = []
    for client in filter(lambda c: wanted(c, only), CLIENTS):
        family = speaks(client)
        label = f"{client}@{situation}-{family}"
        model = "no-such-model" if situation == "unknown" else {
            "claude": "claude-opus-4-8", "gemini": GEMINI_MODEL}.get(family, "gpt-5-codex")
        name = label.replace("@", "-")
        key = make_key(env, situation, name)
        runs.append((f"{client} ({family})", name, key,
                     client_cmds(bin_dir, work, node, key, model, situation == "cut", label)))
    await asyncio.sleep(1.5)  # the node applies the new keys
    for _c, _n, key, _m in runs if situation == "rpm" else ():
        await use_once(node, key)
    since = len(log.read_bytes().splitlines())
    segments: list[list[dict[str, object]]] = []
    if situation in ("revoked", "wrong-key"):  # no key name in the node's log: one client at a time
        results = []
        for _c, _n, _k, (cmd, cenv) in runs:
            results.append(await run_client(cmd, cenv, work))
            await asyncio.sleep(0.5)
            segments.append(access_lines(log, since))
            since = len(log.read_bytes().splitlines())
    else:
        results = list(await asyncio.gather(*(run_client(cmd, cenv, work) for _c, _n, _k, (cmd, cenv) in runs)))
        await asyncio.sleep(1.0)
        lines = access_lines(log, since)
        segments = [[r for r in lines if r.get("key_name") == name] for _c, name, _k, _m in runs]
    seen = []
    for (client, _name, _key, _), (code, out, secs), mine in zip(runs, results, segments, strict=True):
        statuses = " ".join(f"{r.get('status')}" for r in mine)
        said = " | ".join(ln.strip() for ln in out.strip().splitlines()[-8:] if ln.strip())[-900:]
        seen.append(Seen(client, situation, code, secs, len(mine), statuses, said, out))
    return seen


async def main(bin_dir: Path, only: set[str], situations: list[str]) -> int:
    from tests import pg
    from tests.fake_upstream import FakeUpstream
    server = pg.server_url()
    database_url = pg.fresh_database(server, migrated=False)
    work = Path(tempfile.mkdtemp(prefix="shieldes-compat-errors-"))
    up = FakeUpstream(reply="PONG", api_key="sk-fake-upstream", call_tools=False,
                      models=("gpt-5-codex", "gpt-4o-mini", GEMINI_MODEL))
    await up.start()
    port = free_port()
    node_url = f"http://127.0.0.1:{port}"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "SHIELDES_DATABASE_URL": database_url, "FAKE_UPSTREAM_KEY": "sk-fake-upstream",
           "PYTHONPATH": str(root), "SHIELDES_LOG_FORMAT": "json"}
    log = work / "node.log"
    node = None
    seen: list[Seen] = []
    try:
        shieldes(env, "db", "upgrade")
        shieldes(env, "provider", "add", "anthropic", "--type", "anthropic", "--base-url", up.url,
                 "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", "claude-opus-4-8,claude-haiku-4-5")
        shieldes(env, "provider", "add", "openai", "--type", "openai", "--base-url", up.url + "/v1",
                 "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", f"gpt-5-codex,gpt-4o-mini,{GEMINI_MODEL}",
                 "--responses", "native")
        for model in ("claude-opus-4-8", "claude-haiku-4-5", "gpt-5-codex", "gpt-4o-mini", GEMINI_MODEL):
            shieldes(env, "pricing", "set", model, "--input", "1", "--output", "2")
        node = subprocess.Popen([sys.executable, "-m", "shieldes", "serve", "--port", str(port), "--gossip-port",
                                 str(free_port()), "--node-id", "errors"], cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=open(log, "wb"))  # noqa: SIM115
        await wait_ready(node_url, node)
        for situation in situations:
            up.clear_faults()
            if situation == "5xx":
                up.inject("*", status=500, times=None, message="injected upstream failure")
            elif situation == "cut":
                up.inject("*", disconnect_after=3, times=None)
            got = await probe(bin_dir, work, node_url, env, log, situation, only)
            report(got)
            seen += got
    finally:
        if node is not None:
            node.terminate()
            node.wait(30)
        await up.stop()
        pg.drop_database(server, database_url)
    print(f"node log: {log}")
    return 0 if all(s.verdict() == "PASS" for s in seen) else 1


def report(seen: list[Seen]) -> None:
    for s in seen:
        print(f"{s.verdict():<8} {s.client:<24} {s.situation:<9} exit {s.code:<3} {s.seconds:6.1f}s "
              f"requests {s.requests} [{s.statuses}]\n         said: {s.said}", flush=True)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, default=Path(__file__).resolve().parent.parent / ".compat")
    parser.add_argument("--only", default="claude,codex,python")
    parser.add_argument("--situations", default=",".join(SITUATIONS))
    a = parser.parse_args()
    sys.exit(asyncio.run(main(a.prefix.resolve() / "node_modules" / ".bin", set(a.only.split(",")),
                              a.situations.split(","))))
