"""Client compatibility: real coding-agent CLIs and SDKs against a real node.

Installs the Claude Code (`@anthropic-ai/claude-code`), Codex (`@openai/codex`), Gemini
(`@google/gemini-cli`) and OpenCode (`opencode-ai`) CLIs and the openai Node SDK from npm into a
local prefix, starts a fake upstream (tests/fake_upstream.py, speaking the OpenAI and Anthropic
wire formats) and a real node (`python -m shieldes serve`) on a fresh database, configures it with
the CLI (an `anthropic` provider serving the Claude model names, an `openai` provider serving the
GPT names, a virtual key), then runs one non-interactive prompt per client with its default
settings:

  claude -p PROMPT        ANTHROPIC_BASE_URL=<node>  ANTHROPIC_API_KEY=<virtual key>
  codex exec PROMPT       a config.toml whose model provider is the node (wire_api = "responses"),
                          and the built-in OpenAI provider pointed at it (the Responses WebSocket)
  gemini -p PROMPT        GOOGLE_GEMINI_BASE_URL=<node>  GEMINI_API_KEY=<virtual key> (the Gemini API,
                          translated to chat for an OpenAI-compatible deployment)
  opencode run PROMPT     OpenCode with a provider pointed at the node (OPENCODE_CONFIG): an OpenAI-
                          compatible one (chat completions), its `anthropic` (Messages) and its
                          `openai` (Responses)
  node sdk.mjs            the openai Node SDK: chat.completions.create (+ responses.create)

and prints pass/fail per client, with what each sent upstream (paths, models, beta flags). Claude
Code, Codex, Gemini CLI and OpenCode make a tool round (AGENT_PROMPT below): they must read a file
with their own tool and send the result back through the node, where the upstream quotes it.

and `claude-mcp`, `codex-mcp`, `gemini-mcp`, `opencode-mcp` (bench/compat_mcp.py): Claude Code, Codex,
Gemini CLI and OpenCode call a tool of a real MCP server through the node's /mcp/tickets with their
virtual key, the upstream asking for the call.

and, with `python` (a venv under the prefix with langchain-openai, litellm and openai-agents, made
on first use, or --python INTERPRETER), LangChain's ChatOpenAI (chat, and use_responses_api=True),
LiteLLM as an SDK (completion, responses) and the OpenAI Agents SDK (an agent with a function tool,
over HTTP and over the Responses WebSocket).

Run: python bench/compat.py [--prefix DIR] [--verbose] [--dump DIR]
         [--only claude,codex,gemini,opencode,node-sdk,python,claude-mcp,codex-mcp,gemini-mcp,opencode-mcp]
     python bench/compat.py --errors [--prefix DIR] [--only claude,codex,gemini,opencode,python] (compat_errors.py)
Needs node >= 18 and npm (registry access for the first run); uses SHIELDES_TEST_DATABASE_URL if
set, else the embedded Postgres of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import compat_mcp  # noqa: E402
from tests import pg  # noqa: E402
from tests.fake_bedrock import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, FakeBedrock  # noqa: E402
from tests.fake_google import FakeGoogle, service_account  # noqa: E402
from tests.fake_mcp import Seen, running_mcp_server  # noqa: E402
from tests.fake_upstream import FakeUpstream, Recorded  # noqa: E402
from tests.fake_wire import ToolScript  # noqa: E402

PACKAGES = ("@anthropic-ai/claude-code", "@openai/codex", "@google/gemini-cli", "opencode-ai", "openai")
CHAT_ONLY_MODEL = "qwen3-coder"  # served by a `--responses translate` deployment
CODEX_TOOLS_MODEL = "gpt-5-codex"
BEDROCK_PROVIDER, GEMINI_PROVIDER, GEMINI_MODEL = "claude-on-bedrock", "gemini", "gemini-2.5-pro"
VERTEX_PROVIDER = "claude-on-vertex"
CLAUDE_DEFAULTS = ("claude-opus-5-5", "claude-haiku-4-5")  # Claude Code's defaults; others are learned
OPENCODE_CLAUDE = "claude-sonnet-4-5"  # in OpenCode's catalog, and no Claude Code default (never aliased)


def bedrock_id(model: str) -> str:
    """The Bedrock model id of a Claude model name (as Bedrock spells them: anthropic.NAME-v1:0)."""
    return f"anthropic.{model}-v1:0"


def vertex_id(model: str) -> str:
    """The Vertex AI model id of a Claude model name (a version after `@`, as Model Garden lists them)."""
    return f"{model}@20251101"

REPLY = "PONG from the fake upstream"
PROMPT = "Reply with the single word PONG."
# A coding agent's tool round: the fake upstream asks the client to read pong.txt with its own tool
# (Claude Code's Read, Codex's exec_command or shell), the client runs it and sends the result back
# through the node, and the upstream's answer quotes it: the token in the client's output proves the
# round trip, tool call and tool result, in both directions and through each translation.
TOOL_FILE = "pong.txt"
SOCKET_LINE_WAIT = 5.0  # seconds over_socket waits for a WebSocket's access line once its client exited
AGENT_PROMPT = f"Read the file {TOOL_FILE} and reply with the word it holds."


def tool_script(work: Path) -> ToolScript:
    return ToolScript({
        "Read": {"file_path": str(work / TOOL_FILE)},
        "exec_command": {"cmd": f"cat {TOOL_FILE}"},
        "shell_command": {"command": f"cat {TOOL_FILE}"},
        "shell": {"command": ["cat", TOOL_FILE]},
        "read_pong": {},  # the Agents SDK client's own function tool
        "read": {"filePath": str(work / TOOL_FILE)},  # OpenCode's
        "read_file": {"file_path": str(work / TOOL_FILE)},  # Gemini CLI's (last: others pick theirs first)
    })


def tool_names(requests: list[Recorded]) -> set[str]:
    """The tools the client offered the upstream (by name, any API's tool shape; a tool inside a
    Responses `namespace` tool as NAMESPACE.NAME)."""
    names: set[str] = set()
    for r in requests:
        body = r.body if isinstance(r.body, dict) else {}
        for t in body.get("tools") or (body.get("toolConfig") or {}).get("tools") or []:  # (Bedrock: toolConfig)
            if isinstance(t, dict) and t.get("type") == "namespace":
                names |= {f"{t.get('name')}.{inner.get('name')}" for inner in t.get("tools") or []}
            elif isinstance(t, dict):
                name = t.get("name") or (t.get("function") or t.get("toolSpec") or {}).get("name")
                names |= {str(name)} if name else set()  # (not web_search and other unnamed tools)
    return names


def offered_tools(requests: list[Recorded], script: ToolScript) -> set[str]:
    """The scripted tools the client offered the upstream."""
    return tool_names(requests) & set(script.calls)


class BedrockLog:
    """The fake Bedrock's requests as the report reads an upstream's (Recorded)."""

    def __init__(self, fake: FakeBedrock) -> None:
        self.fake = fake

    @property
    def requests(self) -> list[Recorded]:
        return [Recorded("POST", s.path, {}, {k.lower(): v for k, v in s.headers.items()}, s.body)
                for s in self.fake.requests]


class GoogleLog:
    """The fake Google's requests as the report reads an upstream's; Gemini's function declarations
    listed as `tools` by name, as offered_tools reads them (Claude's, on Vertex, already are)."""

    def __init__(self, fake: FakeGoogle) -> None:
        self.fake = fake

    @property
    def requests(self) -> list[Recorded]:
        return [Recorded("POST", s.path, dict(s.query), {k.lower(): v for k, v in s.headers.items()},
                         s.body if "/publishers/anthropic/" in s.path else
                         {**s.body, "tools": [{"name": f["name"]} for t in s.body.get("tools") or []
                                              for f in t.get("functionDeclarations") or []]})
                for s in self.fake.requests if s.path != "/token"]


Upstream = FakeUpstream | BedrockLog | GoogleLog  # what a run reads the upstream's requests from
McpRun = tuple[compat_mcp.Tickets, Seen]  # the ticket MCP server of the run, and what it saw
MCP_CLIENTS = ("claude-mcp", "codex-mcp", "gemini-mcp", "opencode-mcp")
MCP_CHAT_MODEL = "qwen3-coder-mcp"  # Codex's MCP run on a chat-completions-only (`translate`) deployment
# client -> its runs: (label, the key's name, the model, for Codex and OpenCode); a key each, so each run's
# log rows are its own
MCP_RUNS = {"claude-mcp": [("claude-mcp", "claude-mcp", "")],
            "codex-mcp": [("codex-mcp", "codex-mcp", CODEX_TOOLS_MODEL),
                          ("codex-mcp (chat-only upstream)", "codex-mcp-chat", MCP_CHAT_MODEL)],
            "gemini-mcp": [("gemini-mcp", "gemini-mcp", "")],
            "opencode-mcp": [("opencode-mcp", "opencode-mcp", "gpt-4o-mini")]}


def learned_names(outcomes: list[Outcome]) -> list[str]:
    """The model names the runs so far learned (`(it asked for A, B: served too)`)."""
    return [n.strip() for o in outcomes for m in re.finditer(r"\(it asked for ([^:]+): served too\)", o.detail)
            for n in m.group(1).split(",")]


def agent_outcome(name: str, code: int, out: str, err: str, requests: list[Recorded], token: str,
                  script: ToolScript, agent: bool = True) -> Outcome:
    """Passed: the client answered PONG and, when it offered a tool of the script, quoted the file
    that tool read (the tool round went through the node both ways)."""
    tools = offered_tools(requests, script)
    ok = code == 0 and "PONG" in out and (token in out or not tools)
    if not ok:
        why = f" (the tool round via {', '.join(sorted(tools))} did not come back)" if code == 0 and tools else ""
        return Outcome(name, False, f"exit {code}{why}: {(err or out).strip()[-600:]}", summarize(requests))
    round_trip = f"; tool round via {', '.join(sorted(tools))}: the file's token came back" if tools else \
        "; no tool offered (no tool round)" if agent else ""
    return Outcome(name, True, out.strip()[-120:] + round_trip, summarize(requests))
UPSTREAM_KEY = "sk-fake-upstream"
# Model names the clients ask for by default (main model, small/fast model for side tasks), and a
# few neighbours; a name a newer client version asks for shows up as a 404 in the report.
CLAUDE_MODELS = (
    "claude-opus-5-5", "claude-opus-5",
    "claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6", "claude-opus-4-6-fast", "claude-opus-4-5",
    "claude-opus-4-5-20251101", "claude-opus-4-1", "claude-opus-4-1-20250805", "claude-opus-4-0",
    "claude-opus-4-20250514", "claude-opus-4", "claude-sonnet-5", "claude-sonnet-4-6", "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929", "claude-sonnet-4-0", "claude-sonnet-4-20250514", "claude-sonnet-4",
    "claude-haiku-4-5", "claude-haiku-4-5-20251001", "claude-haiku-4", "claude-3-5-haiku-20241022",
    "claude-3-5-haiku-latest", "claude-3-7-sonnet-20250219",
)
GPT_MODELS = ("gpt-6.2-sol", "gpt-6.2", "gpt-6",
              "gpt-5", "gpt-5-codex", "gpt-5.1", "gpt-5.1-codex", "gpt-5.1-codex-max", "gpt-5.1-codex-mini",
              "gpt-5.2", "gpt-5.2-codex", "gpt-5.3-codex", "gpt-5.4", "gpt-5.5", "gpt-5-mini", "gpt-4.1",
              "gpt-4o", "gpt-4o-mini", "codex-mini-latest", "o3", "o4-mini")
# Gemini CLI's (0.61: its main model, and a small one that picks the model per turn), served by the
# `openai` provider; gemini-2.5-pro is the `gemini` provider's (the Claude Code run behind Gemini)
GEMINI_CLI_MODELS = ("gemini-3.1-pro-preview", "gemini-3-pro-preview", "gemini-3-flash-preview",
                     "gemini-3.5-flash-lite", "gemini-2.5-flash", "gemini-2.5-flash-lite")
NODE_SDK_SCRIPT = """
import OpenAI from "openai";
const client = new OpenAI({ baseURL: process.env.SHIELDES_URL + "/v1", apiKey: process.env.SHIELDES_KEY });
const chat = await client.chat.completions.create({ model: "gpt-4o-mini",
  messages: [{ role: "user", content: "hi" }] });
console.log("chat:", chat.choices[0].message.content);
const stream = await client.chat.completions.create({ model: "gpt-4o-mini", stream: true,
  messages: [{ role: "user", content: "hi" }] });
let text = "";
for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
console.log("stream:", text);
const model = await client.models.retrieve("gpt-4o-mini");
console.log("model:", model.id);
if (process.env.SHIELDES_RESPONSES === "1") {
  const resp = await client.responses.create({ model: "gpt-4o-mini", input: "hi" });
  console.log("responses:", resp.output_text);
}
"""


# An agent with a function tool, over the transport the SDK defaults to or the one {transport} sets.
AGENTS_SCRIPT = """
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from openai import AsyncOpenAI
set_tracing_disabled(True)
set_default_openai_client(AsyncOpenAI(base_url=URL + "/v1", api_key=KEY))
{transport}@function_tool
def read_pong() -> str:
    \"\"\"The word pong.txt holds.\"\"\"
    return open("pong.txt").read()
agent = Agent(name="a", instructions="Be brief.", model="gpt-4o-mini", tools=[read_pong])
print(Runner.run_sync(agent, "hi").final_output)
"""
# Python clients, run with --python (an interpreter that has langchain-openai, litellm, openai-agents;
# --install-python makes one under the prefix). Each prints the model's answer.
PYTHON_CLIENTS = {
    "langchain (responses)": """
from langchain_openai import ChatOpenAI
llm = ChatOpenAI(model="gpt-4o-mini", base_url=URL + "/v1", api_key=KEY, use_responses_api=True)
m = llm.invoke("hi")
print(m.text() if callable(m.text) else m.text)
""",
    "langchain (chat)": """
from langchain_openai import ChatOpenAI
m = ChatOpenAI(model="gpt-4o-mini", base_url=URL + "/v1", api_key=KEY).invoke("hi")
print(m.content)
""",
    "litellm sdk": """
import litellm
r = litellm.completion(model="openai/gpt-4o-mini", api_base=URL + "/v1", api_key=KEY,
                       messages=[{"role": "user", "content": "hi"}])
print(r.choices[0].message.content)
r = litellm.responses(model="openai/gpt-4o-mini", input="hi", api_base=URL + "/v1", api_key=KEY)
print([c.text for item in r.output if item.type == "message" for c in item.content][0])
""",
    "openai-agents sdk": AGENTS_SCRIPT.format(transport=""),
    "openai-agents sdk (websocket)": AGENTS_SCRIPT.format(
        transport="from agents import set_default_openai_responses_transport\n"
                  "set_default_openai_responses_transport(\"websocket\")\n"),
}
PYTHON_PACKAGES = ("langchain-openai", "litellm", "openai-agents")


@dataclass
class Outcome:
    client: str
    ok: bool
    detail: str
    seen: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install(prefix: Path) -> Path:
    """npm packages into `prefix` (those already there are skipped); returns the bin directory."""
    bin_dir = prefix / "node_modules" / ".bin"
    missing = [name for name in PACKAGES if not (prefix / "node_modules" / name).exists()]
    if not missing:
        return bin_dir
    if shutil.which("npm") is None:
        raise SystemExit("error: npm not found; install Node.js >= 18 (with npm) and run again")
    prefix.mkdir(parents=True, exist_ok=True)
    print(f"installing {', '.join(missing)} into {prefix} ...", flush=True)
    # the releases a user installing today gets, not whatever npm's cache holds
    subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--prefer-online",
                    *(f"{name}@latest" for name in missing)],
                   check=True, stdout=subprocess.DEVNULL)
    return bin_dir


def shieldes(env: dict[str, str], *args: str) -> object:
    out = subprocess.run([sys.executable, "-m", "shieldes", "--json", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"error: shieldes {' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")
    return json.loads(out.stdout) if out.stdout.strip() else None


async def wait_ready(base: str, node: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if node.poll() is not None:
                raise SystemExit(f"error: the node exited with status {node.returncode} before it was ready")
            try:
                async with http.get(base + "/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("error: the node did not become ready within 60 s")


def summarize(requests: list[Recorded]) -> list[str]:
    seen: Counter[str] = Counter()
    for r in requests:
        model = r.body.get("model") if isinstance(r.body, dict) else None
        beta = r.headers.get("anthropic-beta")
        query = "?" + "&".join(f"{k}={v}" for k, v in r.query.items()) if r.query else ""
        seen[f"{r.method} {r.path}{query} model={model}" + (f" beta={beta[:60]}" if beta else "")] += 1
    return [f"{n} x {line}" for line, n in seen.items()]


def dump(requests: list[Recorded], to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(requests):
        record = {"method": r.method, "path": r.path, "query": r.query, "body": r.body,
                  "headers": {k: v for k, v in r.headers.items() if k not in ("x-api-key", "authorization")}}
        (to / f"{i:03d}{r.path.replace('/', '_')}.json").write_text(json.dumps(record, indent=1))


async def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return -1, out.decode(errors="replace"), err.decode(errors="replace") + f"\n(timed out after {timeout} s)"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def base_env(home: Path) -> dict[str, str]:
    """A clean HOME so no user configuration or login of the machine is used."""
    keep = ("PATH", "LANG", "TERM", "SYSTEMROOT", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "HOME": str(home), "NO_COLOR": "1"}


async def claude(bin_dir: Path, node: str, key: str, work: Path, up: Upstream, name: str,
                 key_var: str = "ANTHROPIC_API_KEY") -> Outcome:
    """`key_var`: ANTHROPIC_API_KEY (sent as x-api-key) or ANTHROPIC_AUTH_TOKEN (sent as a Bearer token)."""
    home = work / f"home-{len(list(work.iterdir()))}"
    home.mkdir()
    env = {**base_env(home), "ANTHROPIC_BASE_URL": node, key_var: key}
    start = len(up.requests)
    code, out, err = await run([str(bin_dir / "claude"), "-p", AGENT_PROMPT], env, work, 240)
    return agent_outcome(name, code, out, err, up.requests[start:], token_of(work), tool_script(work))


async def codex(bin_dir: Path, node: str, key: str, work: Path, up: Upstream, label: str = "codex",
                model: str | None = None, builtin: bool = False) -> Outcome:
    """`builtin`: Codex's own OpenAI provider pointed at the node (`openai_base_url`, the key saved with
    `codex login --with-api-key`), which speaks the Responses WebSocket mode; else a `model_providers`
    entry (HTTP)."""
    home = work / f"home-{len(list(work.iterdir()))}"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    provider = f'openai_base_url = "{node}/v1"\n' if builtin else (
        'model_provider = "shieldes"\n\n[model_providers.shieldes]\nname = "shieldes"\n'
        f'base_url = "{node}/v1"\nenv_key = "SHIELDES_KEY"\nwire_api = "responses"\n')
    (codex_home / "config.toml").write_text((f'model = "{model}"\n' if model else "") + provider)
    env = {**base_env(home), "CODEX_HOME": str(codex_home), "SHIELDES_KEY": key}
    if builtin:
        login = await asyncio.create_subprocess_exec(str(bin_dir / "codex"), "login", "--with-api-key", env=env,
                                                     stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                                                     stderr=asyncio.subprocess.DEVNULL)
        await login.communicate(key.encode())
    log_lines = len((work / "node.log").read_bytes().splitlines())
    start = len(up.requests)
    code, out, err = await run([str(bin_dir / "codex"), "exec", "--skip-git-repo-check", AGENT_PROMPT], env, work,
                               240)
    outcome = agent_outcome(label, code, out, err, up.requests[start:], token_of(work), tool_script(work))
    return await over_socket(outcome, work, log_lines) if builtin else outcome


async def gemini_cli(bin_dir: Path, node: str, key: str, work: Path, up: Upstream) -> Outcome:
    """Gemini CLI on the node's Gemini API. GOOGLE_GEMINI_BASE_URL alone makes the CLI pick its
    `gateway` sign-in, which its own start-up check then refuses ("Invalid auth method selected.",
    0.61); the Gemini API key sign-in, chosen in its settings, takes the same base URL and key."""
    home = work / f"home-{len(list(work.iterdir()))}"
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(
        {"security": {"auth": {"selectedType": "gemini-api-key"}}}))
    env = {**base_env(home), "GOOGLE_GEMINI_BASE_URL": node, "GEMINI_API_KEY": key,
           "GEMINI_CLI_TRUST_WORKSPACE": "true"}  # headless: no prompt to trust the folder
    start = len(up.requests)
    code, out, err = await run([str(bin_dir / "gemini"), "-p", AGENT_PROMPT], env, work, 240)
    outcome = agent_outcome("gemini-cli", code, out, err, up.requests[start:], token_of(work), tool_script(work))
    unserved = None if outcome.ok else UNSERVED.search(err)  # (its stack trace buries the node's message)
    if unserved:
        outcome.detail = unserved.group(0) + "; " + outcome.detail
    return outcome


async def opencode(bin_dir: Path, node: str, key: str, work: Path, up: Upstream, provider: str,
                   model: str) -> Outcome:
    """`opencode run` with one provider pointed at the node, its main and small model both `model`:
    `shieldes`, an OpenAI-compatible provider (chat completions), or OpenCode's own `anthropic`
    (Messages) or `openai` (Responses) with the node as their base URL."""
    home = work / f"home-{len(list(work.iterdir()))}"
    home.mkdir()
    entry: dict[str, object] = {"npm": "@ai-sdk/openai-compatible", "name": "shieldes",
                                "models": {model: {"name": model}}} if provider == "shieldes" else {}
    entry["options"] = {"baseURL": node + "/v1", "apiKey": "{env:SHIELDES_KEY}"}
    config = home / "opencode.json"
    config.write_text(json.dumps({"$schema": "https://opencode.ai/config.json", "provider": {provider: entry},
                                  "model": f"{provider}/{model}", "small_model": f"{provider}/{model}",
                                  "autoupdate": False, "share": "disabled"}))
    env = {**base_env(home), "OPENCODE_CONFIG": str(config), "SHIELDES_KEY": key}
    start = len(up.requests)
    code, out, err = await run([str(bin_dir / "opencode"), "run", AGENT_PROMPT], env, work, 240)
    wire = {"shieldes": "chat", "anthropic": "Messages", "openai": "Responses"}[provider]
    return agent_outcome(f"opencode ({provider} provider, {wire})", code, out, err, up.requests[start:],
                         token_of(work), tool_script(work))


async def mcp_client(label: str, key_name: str, model: str, bin_dir: Path, node: str, key: str, work: Path,
                     up: FakeUpstream, env: dict[str, str], run_mcp: McpRun) -> Outcome:
    """A run of MCP_RUNS (`claude-mcp`, `codex-mcp`, `gemini-mcp`, `opencode-mcp`): the client calls the
    ticket server's tool at the node's /mcp/tickets with its virtual key (bench/compat_mcp.py), the
    upstream scripted to call it. Gemini CLI's model calls go to the node's Gemini API (its model names
    are the `openai` provider's), OpenCode's to chat completions (`model`)."""
    home = work / f"home-{len(list(work.iterdir()))}"
    home.mkdir()
    tickets, seen = run_mcp
    tickets.calls.clear()
    seen.requests.clear()
    if label == "claude-mcp":
        config = home / "mcp.json"
        config.write_text(json.dumps(compat_mcp.claude_config(node, key)))
        cmd = [str(bin_dir / "claude"), *compat_mcp.claude_args(config)]
        client_env = {**base_env(home), "ANTHROPIC_BASE_URL": node, "ANTHROPIC_API_KEY": key}
    elif label == "gemini-mcp":
        (home / ".gemini").mkdir()
        (home / ".gemini" / "settings.json").write_text(json.dumps(compat_mcp.gemini_settings(node, key)))
        cmd = [str(bin_dir / "gemini"), "-p", compat_mcp.PROMPT]
        client_env = {**base_env(home), "GOOGLE_GEMINI_BASE_URL": node, "GEMINI_API_KEY": key,
                      "GEMINI_CLI_TRUST_WORKSPACE": "true"}
    elif label == "opencode-mcp":
        config = home / "opencode.json"
        config.write_text(json.dumps(compat_mcp.opencode_config(node, model)))
        cmd = [str(bin_dir / "opencode"), "run", compat_mcp.PROMPT]
        client_env = {**base_env(home), "OPENCODE_CONFIG": str(config), "SHIELDES_KEY": key}
    else:
        (home / ".codex").mkdir()
        (home / ".codex" / "config.toml").write_text(compat_mcp.codex_config(node, model))
        cmd = [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", compat_mcp.PROMPT]
        client_env = {**base_env(home), "CODEX_HOME": str(home / ".codex"), "SHIELDES_KEY": key}
    script, up.tool_script = up.tool_script, compat_mcp.McpScript()
    start, open_before = len(up.requests), seen.open
    try:
        code, out, err = await run(cmd, client_env, work, 240)
    finally:
        up.tool_script = script
    requests = up.requests[start:]
    left_open = await compat_mcp.streams_left(seen, open_before)
    rows = await compat_mcp.logged_rows(env, ROOT, key_name, {m for m, _ in seen.requests}) if tickets.calls else []
    found = compat_mcp.verdict(code, out, err, tickets, seen, rows, key, sorted(tool_names(requests)), left_open)
    detail = found.detail
    unserved = None if found.ok else UNSERVED.search(err + out)
    if unserved:  # (for learning(): a model name the client asked for that nobody serves)
        detail = unserved.group(0) + "; " + detail
    return Outcome(label, found.ok, detail, summarize(requests))


async def over_socket(outcome: Outcome, work: Path, log_lines: int) -> Outcome:
    """`outcome`, failed if its turns did not go over a Responses WebSocket (the node's access lines
    after `log_lines` show no `GET /v1/responses ... 101`): a client that falls back to HTTP answers too.
    A socket's access line is written once it closes, which can be just after the client exits (and
    access lines go out up to 50 ms late): it is waited for, up to SOCKET_LINE_WAIT."""
    if not outcome.ok:
        return outcome
    deadline = time.monotonic() + SOCKET_LINE_WAIT
    while not socket_line_after(work / "node.log", log_lines) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if not socket_line_after(work / "node.log", log_lines):
        return Outcome(outcome.client, False, "answered, but over HTTP: the WebSocket was refused (see the node "
                       "log)", outcome.seen)
    outcome.detail += "; over the Responses WebSocket"
    return outcome


def socket_line_after(log: Path, log_lines: int) -> bool:
    return any(b"GET /v1/responses" in line and b" 101 " in line for line in log.read_bytes().splitlines()[log_lines:])


def token_of(work: Path) -> str:
    return (work / TOOL_FILE).read_text().strip()


async def node_sdk(prefix: Path, node: str, key: str, work: Path, up: FakeUpstream, responses: bool) -> Outcome:
    script = prefix / "sdk.mjs"
    script.write_text(NODE_SDK_SCRIPT)
    env = {**base_env(work), "SHIELDES_URL": node, "SHIELDES_KEY": key, "SHIELDES_RESPONSES": "1" if responses else ""}
    start = len(up.requests)
    code, out, err = await run(["node", str(script)], env, prefix, 60)
    ok = code == 0 and out.count("PONG") >= (3 if responses else 2) and "model: gpt-4o-mini" in out
    detail = " | ".join(line for line in out.split("\n") if line) if ok else f"exit {code}: {err.strip()[-600:]}"
    return Outcome("openai-node-sdk", ok, detail, summarize(up.requests[start:]))


# What the node answers (and Claude Code reports) when a client asks for a model no provider serves.
UNSERVED = re.compile(r"model '([^']+)' is not served by any provider|issue with the selected model \(([^)\[]+)")


@dataclass
class Served:
    """The providers of the run and their model lists, so names a client asks for can be added."""

    env: dict[str, str]
    node: str
    key: str
    providers: dict[str, tuple[str, list[str]]]  # "claude" | "gpt" -> (provider name, models)
    # "claude" | "gpt" -> the upstream model a client's name is an alias of, where the provider serves
    # other names (Bedrock's model ids, Gemini's models)
    aliased: dict[str, Callable[[str], str]] = field(default_factory=dict)

    async def add(self, model: str) -> None:
        family = "claude" if model.startswith("claude") else "gpt"
        name, models = self.providers[family]
        upstream = self.aliased[family](model) if family in self.aliased else model
        if upstream not in models:
            models.append(upstream)
            shieldes(self.env, "provider", "update", name, "--models", ",".join(models))
        if upstream != model:
            shieldes(self.env, "model", "alias", model, "--target", f"{name}/{upstream}")
        await wait_served(self.node, self.key, model)

    async def alias(self, family: str, provider: str, models: list[str], upstream: Callable[[str], str],
                    names: list[str]) -> None:
        """Serve `names` from `provider` (which lists `models`) as aliases of upstream(name)."""
        self.providers[family], self.aliased[family] = (provider, models), upstream
        for name in names:
            shieldes(self.env, "model", "alias", name, "--target", f"{provider}/{upstream(name)}")
        await wait_served(self.node, self.key, names[0])


async def learning(served: Served, attempt: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """Run a client; when it asked for a model name nobody serves (newer clients default to newer
    models), serve that name too and run it again (at most 3 new names)."""
    learned: list[str] = []
    while True:
        outcome = await attempt()
        found = None if outcome.ok else UNSERVED.search(outcome.detail)
        model = (found.group(1) or found.group(2)).strip() if found else None
        if model is None or model in learned or len(learned) == 3:
            break
        await served.add(model)
        learned.append(model)
    if learned:
        outcome.detail += f"  (it asked for {', '.join(learned)}: served too)"
    return outcome


async def wait_served(node: str, key: str, model: str, owner: str | None = None, timeout: float = 30) -> None:
    """Until the node has applied a provider change (GET /v1/models/{id} answers, by `owner`)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        while time.monotonic() < deadline:
            async with http.get(f"{node}/v1/models/{model}") as resp:
                if resp.status == 200 and owner in (None, (await resp.json())["owned_by"]):
                    return
            await asyncio.sleep(0.1)
    raise SystemExit(f"error: the node did not apply the provider change within {timeout} s")


async def python_client(python: str, name: str, code: str, node: str, key: str, work: Path,
                        up: FakeUpstream) -> Outcome:
    script = work / "client.py"
    script.write_text(f"URL = {node!r}\nKEY = {key!r}\n" + code)
    start = len(up.requests)
    log_lines = len((work / "node.log").read_bytes().splitlines())
    rc, out, err = await run([python, str(script)], {**base_env(work), "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                             work, 120)
    outcome = agent_outcome(name, rc, " | ".join(line for line in out.split("\n") if line), err,
                            up.requests[start:], token_of(work), tool_script(work), agent="agents" in name)
    return await over_socket(outcome, work, log_lines) if "websocket" in name else outcome


def install_python(prefix: Path) -> str:
    venv = prefix / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(python), "-c", "import langchain_openai, litellm, agents"],
                      capture_output=True).returncode != 0:
        print(f"installing {', '.join(PYTHON_PACKAGES)} into {venv} ...", flush=True)
        # without PYTHONPATH: a checkout on it would look to pip like an installed shieldes lacking its dependencies
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PYTHON_PACKAGES], check=True, env=env)
    return str(python)


async def has_responses(node: str, key: str) -> bool:
    async with aiohttp.ClientSession() as http, http.post(
            node + "/v1/responses", json={"model": "gpt-4o-mini", "input": "hi"},
            headers={"Authorization": f"Bearer {key}"}) as resp:
        return resp.status != 404 or (await resp.json()).get("error", {}).get("code") != "not_found"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, default=ROOT / ".compat", help="npm prefix (default .compat)")
    parser.add_argument("--only", default="claude,codex,gemini,opencode,node-sdk,python," + ",".join(MCP_CLIENTS),
                        help="comma-separated clients to run: claude, codex, gemini, opencode, node-sdk, python, "
                        "claude-mcp, codex-mcp, gemini-mcp, opencode-mcp (an MCP tool called through the node)")
    parser.add_argument("--python", help="interpreter with langchain-openai, litellm and openai-agents installed "
                        "(default: a venv under the prefix, made on first use)")
    parser.add_argument("--verbose", action="store_true", help="print what each client sent upstream")
    parser.add_argument("--dump", type=Path, help="write every request the upstream received to this directory")
    parser.add_argument("--errors", action="store_true",
                        help="instead: what each client shows when the gateway refuses or the upstream fails "
                        "(bench/compat_errors.py; the Python clients run on this interpreter)")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    bin_dir = install(args.prefix.resolve())
    if args.errors:
        from bench import compat_errors
        return await compat_errors.main(bin_dir, wanted, list(compat_errors.SITUATIONS))
    python = (args.python or install_python(args.prefix.resolve())) if "python" in wanted else ""

    server = pg.server_url()
    database_url = pg.fresh_database(server, migrated=False)
    work = Path(tempfile.mkdtemp(prefix="shieldes-compat-"))
    (work / TOOL_FILE).write_text(f"PONG-{os.urandom(6).hex()}\n")
    up = FakeUpstream(reply=REPLY, api_key=UPSTREAM_KEY, call_tools=False, models=GPT_MODELS,
                      tool_script=tool_script(work))
    await up.start()
    port = free_port()
    node_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SHIELDES_DATABASE_URL": database_url, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
           "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_EC2_METADATA_DISABLED": "true",  # the fake Bedrock's
           # the MCP server's token is stored encrypted (`mcp add --header`)
           "SHIELDES_ENCRYPTION_KEY": "base64:" + base64.b64encode(os.urandom(32)).decode()}
    node: subprocess.Popen[bytes] | None = None
    outcomes: list[Outcome] = []
    mcp_clients = [c for c in MCP_CLIENTS if c in wanted]
    stack = contextlib.ExitStack()
    try:
        shieldes(env, "db", "upgrade")
        shieldes(env, "provider", "add", "anthropic", "--type", "anthropic", "--base-url", up.url,
                 "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", ",".join(CLAUDE_MODELS))
        gpt = ("provider", "add", "openai", "--type", "openai", "--base-url", up.url + "/v1",
               "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", ",".join((*GPT_MODELS, *GEMINI_CLI_MODELS)))
        try:  # the upstream's own /v1/responses, as with OpenAI itself (Codex sends items only it knows)
            shieldes(env, *gpt, "--responses", "native")
        except SystemExit:  # a version without per-provider Responses modes
            shieldes(env, *gpt)
        key = str(shieldes(env, "key", "create", "--name", "compat", "--rpm", "600")["key"])  # type: ignore[index]
        if mcp_clients:  # the ticket server, registered with its own token; a key of each client's may use it
            logging.getLogger("mcp").setLevel(logging.WARNING)  # (the SDK's server logs each session at INFO)
            tickets = compat_mcp.Tickets()
            mcp_url, seen = stack.enter_context(running_mcp_server(tickets.token, build=tickets.build))
            run_mcp: McpRun = (tickets, seen)
            shieldes(env, "mcp", "add", compat_mcp.SERVER, "--url", mcp_url,
                     "--header", f"Authorization: Bearer {tickets.token}")
            mcp_keys = {name: str(shieldes(env, "key", "create", "--name", name, "--rpm", "600",  # type: ignore[index]
                                           "--mcp", compat_mcp.SERVER)["key"])
                        for c in mcp_clients for _, name, _ in MCP_RUNS[c]}
            if "codex-mcp" in mcp_clients:
                shieldes(env, "provider", "add", "chat-only-mcp", "--type", "openai", "--base-url", up.url + "/v1",
                         "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", MCP_CHAT_MODEL, "--responses", "translate")
        served = Served(env, node_url, key, {"claude": ("anthropic", list(CLAUDE_MODELS)),
                                             "gpt": ("openai", [*GPT_MODELS, *GEMINI_CLI_MODELS])})
        node = subprocess.Popen([sys.executable, "-m", "shieldes", "serve", "--port", str(port), "--gossip-port",
                                 str(free_port()), "--node-id", "compat"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=open(work / "node.log", "wb"))  # noqa: SIM115
        await wait_ready(node_url, node)
        responses = await has_responses(node_url, key)
        # the MCP runs first, while the Claude names are still on the `anthropic` provider
        for label, key_name, model in [r for c in mcp_clients for r in MCP_RUNS[c]]:
            if label.startswith("codex") and not responses:
                outcomes.append(Outcome(label, False, "skipped: this node has no /v1/responses (Codex needs it)"))
                continue
            outcomes.append(await learning(served, lambda r=(label, key_name, model): mcp_client(  # type: ignore[misc]
                *r, bin_dir, node_url, mcp_keys[r[1]], work, up, env, run_mcp)))
        if "claude" in wanted:
            outcomes.append(await learning(served, lambda: claude(bin_dir, node_url, key, work, up, "claude-code")))
            # the same Claude model names served by an OpenAI-compatible deployment: translated
            models = served.providers["claude"][1]
            shieldes(env, "provider", "remove", "anthropic")
            shieldes(env, "provider", "add", "claude-on-openai", "--type", "openai", "--base-url", up.url + "/v1",
                     "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", ",".join(models))
            served.providers["claude"] = ("claude-on-openai", models)
            await wait_served(node_url, key, models[0], "openai")
            outcomes.append(await learning(served, lambda: claude(
                bin_dir, node_url, key, work, up, "claude-code (openai upstream)", "ANTHROPIC_AUTH_TOKEN")))
            # Claude on Amazon Bedrock: Messages translated to Converse, SigV4-signed, the answer read from
            # AWS's binary event stream; the client's model names are aliases of Bedrock's model ids
            async with FakeBedrock(max_prompt=10**7, tool_script=tool_script(work)) as bedrock:
                shieldes(env, "provider", "remove", "claude-on-openai")
                ids = sorted({bedrock_id(m) for m in CLAUDE_DEFAULTS})
                shieldes(env, "provider", "add", BEDROCK_PROVIDER, "--type", "bedrock", "--region", bedrock.region,
                         "--base-url", bedrock.url, "--models", ",".join(ids))
                await served.alias("claude", BEDROCK_PROVIDER, ids, bedrock_id, list(CLAUDE_DEFAULTS))
                outcomes.append(await learning(served, lambda: claude(
                    bin_dir, node_url, key, work, BedrockLog(bedrock), "claude-code (bedrock upstream)")))
            # Google's Gemini API behind the same names, and Codex asking for a Gemini model: Messages and
            # Responses translated to generateContent, tool schemas cut to what Gemini takes
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the service account's
            async with FakeGoogle(api_key=UPSTREAM_KEY, max_prompt=10**7, tool_script=tool_script(work),
                                  public_key=private.public_key()) as google:
                shieldes(env, "provider", "add", GEMINI_PROVIDER, "--type", "gemini", "--base-url",
                         google.url + "/v1beta", "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", GEMINI_MODEL)
                await served.alias("claude", GEMINI_PROVIDER, [GEMINI_MODEL], lambda _: GEMINI_MODEL,
                                   sorted({*CLAUDE_DEFAULTS, *learned_names(outcomes)}))
                shieldes(env, "provider", "remove", BEDROCK_PROVIDER)
                outcomes.append(await learning(served, lambda: claude(
                    bin_dir, node_url, key, work, GoogleLog(google), "claude-code (gemini upstream)")))
                if "codex" in wanted and responses:
                    outcomes.append(await codex(bin_dir, node_url, key, work, GoogleLog(google),
                                                f"codex ({GEMINI_MODEL})", GEMINI_MODEL))
                # Claude on Vertex AI: Anthropic's wire format at the `anthropic` publisher's rawPredict and
                # streamRawPredict, a service account's token; the names are aliases of Vertex model ids
                account = work / "vertex-sa.json"
                account.write_text(json.dumps(service_account(private, google.url + "/token")))
                ids = sorted({vertex_id(m) for m in (*CLAUDE_DEFAULTS, *learned_names(outcomes))})
                shieldes(env, "provider", "add", VERTEX_PROVIDER, "--type", "vertex", "--project", "proj-1",
                         "--location", "us-east5", "--credentials-file", str(account), "--base-url", google.url,
                         "--models", ",".join(ids))
                await served.alias("claude", VERTEX_PROVIDER, ids, vertex_id,
                                   sorted({*CLAUDE_DEFAULTS, *learned_names(outcomes)}))
                outcomes.append(await learning(served, lambda: claude(
                    bin_dir, node_url, key, work, GoogleLog(google), "claude-code (vertex upstream)")))
        if "codex" in wanted:
            if responses:
                outcomes.append(await learning(served, lambda: codex(bin_dir, node_url, key, work, up)))
                # a model Codex offers its tools for (the default may be sent none): a tool round, native
                outcomes.append(await codex(bin_dir, node_url, key, work, up, f"codex ({CODEX_TOOLS_MODEL})",
                                            CODEX_TOOLS_MODEL))
                # Codex's built-in OpenAI provider pointed at the node: the Responses WebSocket mode
                outcomes.append(await codex(bin_dir, node_url, key, work, up,
                                            f"codex (built-in provider, {CODEX_TOOLS_MODEL})", CODEX_TOOLS_MODEL,
                                            builtin=True))
                # a chat-completions-only upstream (vLLM, Ollama, ...): Responses translated to chat
                shieldes(env, "provider", "add", "chat-only", "--type", "openai", "--base-url", up.url + "/v1",
                         "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", CHAT_ONLY_MODEL)
                await wait_served(node_url, key, CHAT_ONLY_MODEL)
                outcomes.append(await codex(bin_dir, node_url, key, work, up, "codex (chat-only upstream)",
                                            CHAT_ONLY_MODEL))
            else:
                outcomes.append(Outcome("codex", False, "skipped: this node has no /v1/responses (Codex needs it)"))
        if "gemini" in wanted:  # its model names (main, and a small one for routing) served as GPT's are
            outcomes.append(await learning(served, lambda: gemini_cli(bin_dir, node_url, key, work, up)))
        if "opencode" in wanted:
            if "claude" in wanted:  # the Claude names went to Vertex, whose fake is gone: one back on Anthropic's
                shieldes(env, "provider", "add", "claude-for-opencode", "--type", "anthropic", "--base-url", up.url,
                         "--api-key-env", "FAKE_UPSTREAM_KEY", "--models", OPENCODE_CLAUDE)
                await wait_served(node_url, key, OPENCODE_CLAUDE)
            for provider, model in (("shieldes", "gpt-4o-mini"), ("anthropic", OPENCODE_CLAUDE),
                                    ("openai", "gpt-5.5")):  # (models its catalog lists)
                if provider == "openai" and not responses:
                    outcomes.append(Outcome("opencode (openai provider)", False, "skipped: no /v1/responses"))
                    continue
                outcomes.append(await learning(served, lambda p=provider, m=model: opencode(  # type: ignore[misc]
                    bin_dir, node_url, key, work, up, p, m)))
        if "node-sdk" in wanted:
            outcomes.append(await node_sdk(args.prefix.resolve(), node_url, key, work, up, responses))
        for name, code in PYTHON_CLIENTS.items() if python else ():
            if ("responses" in code or "agents" in code or "litellm" in code) and not responses:
                outcomes.append(Outcome(name, False, "skipped: this node has no /v1/responses"))
                continue
            outcomes.append(await python_client(python, name, code, node_url, key, work, up))
    finally:
        if node is not None:
            node.terminate()
            node.wait(30)
        await up.stop()
        stack.close()
        pg.drop_database(server, database_url)
        if args.dump:
            dump(up.requests, args.dump)
    width = max(len(o.client) for o in outcomes) if outcomes else 10
    print(f"\n{'client':<{width}}  result  detail")
    for o in outcomes:
        print(f"{o.client:<{width}}  {'PASS' if o.ok else 'FAIL':<6}  {o.detail}")
        if args.verbose or not o.ok:
            for line in o.seen:
                print(f"{'':<{width}}          upstream: {line}")
    if any(not o.ok for o in outcomes):
        print(f"\nnode log: {work / 'node.log'}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
