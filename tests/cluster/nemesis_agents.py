"""The nemesis's agent traffic, beside its chat load: what coding agents send through the official
SDKs. Each worker holds one conversation at a time and sends its turns to a randomly chosen node:

* `responses`: `POST /v1/responses` (openai SDK), streamed or not, `store: true`, each turn
  continuing the previous one by `previous_response_id` on whatever node it lands on;
* `socket`: the WebSocket mode (`client.responses.connect()`), a few turns per connection, each
  continuing the lane's latest response; a new connection (after a close, or every few turns) goes
  to another node and continues the last stored response by id, as Codex does after a 1001;
* `messages`: Anthropic Messages (anthropic SDK), streamed or not, the history sent every turn.

Every turn's last user message is `nemesis <tag>`, so the fake upstream's record of it (a chat
completion: these deployments translate) is found again; `Turn` records what the client saw."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai

from tests.cluster.harness import NodeProc
from tests.cluster.nemesis_agent_check import AGENT_APIS, Turn, predecessor_lost

TURNS_PER_CONVERSATION = 4
TURNS_PER_SOCKET = 3
# past SHIELDES_DB_REQUEST_TIMEOUT (5 s), so a 503 for a stalled database reaches the client, and past a
# continuation's wait for Postgres plus its longest poll (2 s + 3 s after an outage)
CLIENT_TIMEOUT = 13.0
SOCKET_WAIT = 30.0  # how long a socket client waits for its next event before calling it a hang


def error_body(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class AgentLoad:
    model: str
    max_tokens: int
    secrets: Mapping[str, str]  # api -> the key's secret
    nodes: list[NodeProc]
    seed: int
    turns: list[Turn] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, workers: int = 2) -> None:
        runs = {"responses": self._responses, "socket": self._socket, "messages": self._messages}
        self._tasks = [asyncio.create_task(runs[api](w, random.Random(f"{self.seed}.{api}.{w}")))
                       for api in AGENT_APIS for w in range(workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def _turn(self, api: str, w: int, node: NodeProc, stream: bool, previous: Turn | None) -> Turn:
        turn = Turn(api=api, tag=f"{api}.{w}.{len(self.turns)}", node=node.node_id, sent_at=time.time(),
                    stream=stream, previous=previous.response_id if previous else None,
                    previous_tag=previous.tag if previous else None, number=previous.number + 1 if previous else 1)
        self.turns.append(turn)
        return turn

    async def _pace(self, turn: Turn) -> None:
        await asyncio.sleep(0.1 if turn.status == 200 else 0.3)

    # --- POST /v1/responses ------------------------------------------------------------------------

    async def _responses(self, w: int, rnd: random.Random) -> None:
        clients = {n.node_id: openai.AsyncOpenAI(base_url=n.base + "/v1", api_key=self.secrets["responses"],
                                                 max_retries=0, timeout=CLIENT_TIMEOUT) for n in self.nodes}
        previous: Turn | None = None
        try:
            while not self._stop.is_set():
                node = rnd.choice(self.nodes)
                turn = self._turn("responses", w, node, rnd.random() < 0.5, previous)
                await self._one_response(clients[node.node_id], turn)
                turn.ended_at = time.time()
                # a failed turn is sent again as the next one (continuing the same predecessor),
                # unless that is gone: a new conversation then
                lost = predecessor_lost(turn.status, turn.error)
                if turn.status == 200 or lost:
                    previous = None if lost or turn.number >= TURNS_PER_CONVERSATION else turn
                await self._pace(turn)
        finally:
            for c in clients.values():
                await c.close()

    async def _one_response(self, client: openai.AsyncOpenAI, turn: Turn) -> None:
        args: dict[str, Any] = {"model": self.model, "input": f"nemesis {turn.tag}", "store": True,
                                "max_output_tokens": self.max_tokens}
        if turn.previous:
            args["previous_response_id"] = turn.previous
        try:
            if not turn.stream:
                done = await client.responses.create(**args)
                turn.complete(done.id, done.usage.input_tokens if done.usage else -1,
                              done.usage.output_tokens if done.usage else -1)
                return
            events = await client.responses.create(**args, stream=True)
            async for event in events:
                if event.type == "response.completed":
                    r = event.response
                    turn.complete(r.id, r.usage.input_tokens if r.usage else -1,
                                  r.usage.output_tokens if r.usage else -1)
                elif event.type in ("error", "response.failed"):
                    turn.status, turn.error = -1, event.model_dump(mode="json")
            if turn.status != 200 and turn.error is None:
                turn.status = 0  # the stream ended without its terminal event
        except openai.APIStatusError as exc:
            turn.status, turn.error = exc.status_code, error_body(exc.response.text)
        except (openai.APIConnectionError, openai.APITimeoutError):
            turn.status = 0

    # --- the WebSocket mode ------------------------------------------------------------------------

    async def _socket(self, w: int, rnd: random.Random) -> None:
        previous: Turn | None = None
        while not self._stop.is_set():
            node = rnd.choice(self.nodes)
            client = openai.AsyncOpenAI(base_url=node.base + "/v1", api_key=self.secrets["socket"], max_retries=0)
            try:
                async with client.responses.connect(max_retries=0) as conn:
                    for _ in range(TURNS_PER_SOCKET):
                        if self._stop.is_set():
                            break
                        turn = self._turn("socket", w, node, True, previous)
                        await self._one_socket_turn(conn, turn)
                        turn.ended_at = time.time()
                        lost = predecessor_lost(turn.status, turn.error)
                        if turn.status == 200 or lost:
                            previous = None if lost or turn.number >= TURNS_PER_CONVERSATION else turn
                        if turn.status not in (200, -1):  # closed or silent: a new connection
                            break
                        await self._pace(turn)
            except Exception as exc:  # the handshake failed (node down, paused, refused)
                turn = self._turn("socket", w, node, True, previous)
                turn.status, turn.ended_at, turn.error = 0, time.time(), f"connect: {type(exc).__name__}: {exc}"
                await self._pace(turn)
            finally:
                await client.close()

    async def _one_socket_turn(self, conn: Any, turn: Turn) -> None:
        create: dict[str, Any] = {"type": "response.create", "model": self.model, "store": True,
                                  "max_output_tokens": self.max_tokens,
                                  "input": [{"role": "user", "content": f"nemesis {turn.tag}"}]}
        if turn.previous:
            create["previous_response_id"] = turn.previous
        try:
            await asyncio.wait_for(conn.send(create), SOCKET_WAIT)
            while True:
                event = json.loads(await asyncio.wait_for(conn.recv_bytes(), SOCKET_WAIT))
                if event.get("type") == "response.completed":
                    r, usage = event["response"], event["response"].get("usage") or {}
                    turn.complete(r["id"], usage.get("input_tokens", -1), usage.get("output_tokens", -1))
                    return
                if event.get("type") in ("error", "response.failed"):
                    turn.status, turn.error = int(event.get("status") or -1), event
                    return
        except TimeoutError:
            turn.status, turn.error = -2, f"no event within {SOCKET_WAIT} s"
        except Exception as exc:  # the socket closed (a killed node: the kernel resets it)
            turn.status, turn.error = 0, f"closed: {type(exc).__name__}: {exc}"

    # --- Anthropic Messages ------------------------------------------------------------------------

    async def _messages(self, w: int, rnd: random.Random) -> None:
        clients = {n.node_id: anthropic.AsyncAnthropic(base_url=n.base, api_key=self.secrets["messages"],
                                                       max_retries=0, timeout=CLIENT_TIMEOUT) for n in self.nodes}
        history: list[dict[str, Any]] = []
        previous: Turn | None = None
        try:
            while not self._stop.is_set():
                node = rnd.choice(self.nodes)
                turn = self._turn("messages", w, node, rnd.random() < 0.5, previous)
                reply = await self._one_message(clients[node.node_id], turn, history)
                turn.ended_at = time.time()
                if turn.status == 200:
                    history += [{"role": "user", "content": f"nemesis {turn.tag}"},
                                {"role": "assistant", "content": reply}]
                    previous = turn
                    if turn.number >= TURNS_PER_CONVERSATION:
                        history, previous = [], None
                await self._pace(turn)
        finally:
            for c in clients.values():
                await c.close()

    async def _one_message(self, client: anthropic.AsyncAnthropic, turn: Turn,
                           history: list[dict[str, Any]]) -> str:
        messages: Any = [*history, {"role": "user", "content": f"nemesis {turn.tag}"}]
        try:
            if turn.stream:
                async with client.messages.stream(model=self.model, max_tokens=self.max_tokens,
                                                  messages=messages) as s:
                    msg: anthropic.types.Message = await s.get_final_message()
            else:
                msg = await client.messages.create(model=self.model, max_tokens=self.max_tokens, messages=messages)
            turn.complete(msg.id, msg.usage.input_tokens, msg.usage.output_tokens)
            return "".join(b.text for b in msg.content if b.type == "text")
        except anthropic.APIStatusError as exc:
            turn.status, turn.error = exc.status_code, error_body(exc.response.text)
        except (anthropic.APIConnectionError, anthropic.APITimeoutError):
            turn.status = 0
        return ""
