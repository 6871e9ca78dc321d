"""The nemesis checker's part for agent traffic (tests/cluster/nemesis_agents.py): pure functions
over the turns the clients recorded, the faults, what the fake upstream served and what each node
answered for every stored response at the end; each returns the violations it finds. The bounds
are docs/responses.md's (quoted in the messages):

* stored: a stored response a client received in full is readable from every node at the end,
  unless its node was SIGKILLed before writing it: "a node that crashes loses the responses it had
  not written yet", "durable at most 25 ms plus two writes after it ended" (`WRITER_WINDOW`), or
  Postgres was cut between its answer and the kill ("responses stay queued ... and are written
  when it is back").
* failures: a turn fails only while its node is SIGKILLed (until its next boot is ready) or
  SIGSTOPped (a connection error or the client's timeout), or during a Postgres cut
  (503 `database_unavailable`, "reads on other nodes answer 503 meanwhile", with `DB_SLACK` after
  it for a pool to reconnect), or as a 400 `previous_response_not_found` for a predecessor its
  node had not written before it was killed or paused ("as long as the writer's insert lands
  within SHIELDES_RESPONSES_READ_WAIT").
* shapes: every error a client got is its API's (OpenAI's `{"error": {"message", "type", "code"}}`
  or a stream's error event; Anthropic's `{"type": "error", "error": {"type", "message"}}`), never
  a 500.
* usage: every completed turn was served upstream once and the client was told the usage the
  upstream reported (the log's side is nemesis_check.check_usage, per key).
* sockets: a turn on a WebSocket ends (its terminal event, an `error` event or the close) within
  `SOCKET_BOUND` seconds plus the time its node was paused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shieldes.responses.write_pacing import RECONNECT_SLACK
from tests.cluster.nemesis_check import Fault

AGENT_APIS = ("responses", "socket", "messages")
WRITER_WINDOW = 0.5  # seconds: 25 ms plus two writes on a healthy database, with room for a loaded machine
DB_SLACK = 5.0  # SHIELDES_DB_REQUEST_TIMEOUT: a read begun as a cut ended may wait this long
READ_WAIT = 2.0  # SHIELDES_RESPONSES_READ_WAIT
# A kill's fault starts when the harness saw the process exit, a few ms after its signal: a
# connection the dying node dropped may end that much before.
SIGNAL_SLACK = 0.2
# A continuation of a response the node does not hold waits for Postgres up to
# SHIELDES_DB_REQUEST_TIMEOUT, then polls up to SHIELDES_RESPONSES_READ_WAIT for the row (and
# RECONNECT_SLACK more when it waited for Postgres); 1 s more for the answer (6.0 s measured: a read
# that waited out a cut, then the writer's retry).
SOCKET_BOUND = DB_SLACK + READ_WAIT + RECONNECT_SLACK + 1.0


@dataclass
class Turn:
    """One request of an agent client and what it saw."""

    api: str  # responses | socket | messages
    tag: str  # the `nemesis <tag>` of its last user message
    node: str
    sent_at: float
    stream: bool
    previous: str | None = None  # previous_response_id (responses, socket), the last reply's id (messages)
    previous_tag: str | None = None
    number: int = 1  # its place in the conversation
    status: int = -3  # HTTP status (200: received in full), 0 connection error/timeout/close, -1 a stream's
    # error event, -2 no event within the socket client's wait, -3 never answered (the run ended)
    ended_at: float | None = None
    error: Any = None  # the error body or event the client got (or what ended the connection)
    response_id: str | None = None
    input_tokens: int = -1  # the usage the client was told
    output_tokens: int = -1

    def complete(self, response_id: str, input_tokens: int, output_tokens: int) -> None:
        self.status, self.response_id = 200, response_id
        self.input_tokens, self.output_tokens = input_tokens, output_tokens

    @property
    def stored(self) -> bool:
        return self.api != "messages"


# --- windows ----------------------------------------------------------------------------------------


def overlaps(f: Fault, start: float, end: float, slack: float = 0.0) -> bool:
    return f.start <= end and f.end + slack >= start


def node_down(faults: Sequence[Fault], node: str, start: float, end: float) -> bool:
    """Whether `node` was SIGKILLed or SIGTERMed (until its next boot was ready) or SIGSTOPped in
    [start, end]."""
    return any(f.kind in ("kill", "term", "pause") and node in f.nodes and overlaps(f, start, end + SIGNAL_SLACK)
               for f in faults)


def pg_cut(faults: Sequence[Fault], start: float, end: float) -> bool:
    return any(f.kind == "pg_cut" and overlaps(f, start, end, DB_SLACK) for f in faults)


def may_be_unwritten(faults: Sequence[Fault], t: Turn) -> bool:
    """The response of turn `t` (completed) may be lost: its node was SIGKILLed within the writer's
    window after answering it, or after a Postgres cut that began before the kill. A turn sent
    before the kill's fault began was answered by the killed boot (the next boot is started only
    after the harness saw the exit), so before the kill, even when its client, in the same loaded
    harness loop, recorded the answer after the fault's start (0.12 s after it, seed 32872158)."""
    assert t.ended_at is not None
    answered = t.ended_at
    for f in faults:
        if f.kind != "kill" or t.node not in f.nodes or (f.start < answered and f.start < t.sent_at):
            continue
        if f.start - answered <= WRITER_WINDOW or any(c.kind == "pg_cut" and overlaps(c, answered, f.start)
                                                      for c in faults):
            return True
    return False


def unwritten_when_read(faults: Sequence[Fault], prev: Turn, sent: float) -> bool:
    """A continuation sent at `sent` may not find `prev`: it may be lost, or its node was paused
    within the writer's window after it and woke too late for the read's wait."""
    assert prev.ended_at is not None
    return may_be_unwritten(faults, prev) or any(
        f.kind == "pause" and prev.node in f.nodes and f.start <= prev.ended_at + WRITER_WINDOW
        and f.end + WRITER_WINDOW >= sent + READ_WAIT and f.end >= prev.ended_at for f in faults)


def paused_within(faults: Sequence[Fault], node: str, start: float, end: float) -> float:
    return sum(max(0.0, min(f.end, end) - max(f.start, start))
               for f in faults if f.kind == "pause" and node in f.nodes)


def predecessor_lost(status: int, error: Any) -> bool:
    """Whether a continuation was refused because its predecessor is not found (OpenAI's 400)."""
    return status == 400 and error_code(error) == "previous_response_not_found"


def error_code(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    inner: dict[str, Any] = error["error"] if isinstance(error.get("error"), dict) else error
    code = inner.get("code") or inner.get("type")
    return str(code) if code is not None else None


# --- checks ------------------------------------------------------------------------------------------


def check_stored(turns: Sequence[Turn], reads: Mapping[str, Mapping[str, int]], faults: Sequence[Fault]) -> list[str]:
    """`reads`: response id -> node -> the status of GET /v1/responses/{id} there at the end."""
    out = []
    for t in turns:
        if not (t.stored and t.status == 200 and t.response_id and t.ended_at):
            continue
        missing = {n: s for n, s in reads.get(t.response_id, {}).items() if s != 200}
        if not reads.get(t.response_id):
            missing = {"(not read)": -1}
        if missing and not may_be_unwritten(faults, t):
            out.append(f"stored response {t.response_id} ({t.tag}, answered by {t.node} at {t.ended_at:.2f}) "
                       f"not readable at the end: {missing}; docs/responses.md: a response is lost only if "
                       f"'a node that crashes loses the responses it had not written yet' (durable 'at most "
                       f"25 ms plus two writes after it ended', allowed {WRITER_WINDOW} s, or queued while "
                       f"Postgres was unreachable)")
    return out


def explained(t: Turn, faults: Sequence[Fault], by_tag: Mapping[str, Turn]) -> str | None:
    """Why `t` may have failed under the documented bounds, or None."""
    end = t.ended_at if t.ended_at is not None else t.sent_at
    if t.status in (0, -1, -2, -3) and node_down(faults, t.node, t.sent_at, end):
        return "its node was killed or paused"
    if t.status == 503 and error_code(t.error) in ("database_unavailable", "stored_responses_backlog") \
            and pg_cut(faults, t.sent_at, end):
        return "Postgres was cut"
    if t.status == 503 and error_code(t.error) == "node_draining" and node_down(faults, t.node, t.sent_at, end):
        return "its node was draining"
    if predecessor_lost(t.status, t.error) and t.previous_tag:
        prev = by_tag.get(t.previous_tag)
        if prev is not None and unwritten_when_read(faults, prev, t.sent_at):
            return "its predecessor's node died or slept before writing it"
    return None


def timeline(t: Turn, by_tag: Mapping[str, Turn]) -> str:
    """When the turn ran and, for a continuation, when and where its predecessor was answered: what
    a failure's message needs to be read against the schedule's fault times."""
    ended = f"{t.ended_at:.2f}" if t.ended_at is not None else "-"
    said = f"sent {t.sent_at:.2f}, ended {ended}"
    prev = by_tag.get(t.previous_tag) if t.previous_tag else None
    if prev is None:
        return said
    prev_end = f"{prev.ended_at:.2f}" if prev.ended_at is not None else "-"
    return f"{said}; its predecessor {prev.tag} answered by {prev.node} at {prev_end}"


def check_failures(turns: Sequence[Turn], faults: Sequence[Fault]) -> list[str]:
    by_tag = {t.tag: t for t in turns}
    out = []
    for t in turns:
        if t.status == 200 or t.status == -3 or explained(t, faults, by_tag):
            continue
        out.append(f"{t.api} turn {t.tag} on {t.node} ({'continuing ' + t.previous if t.previous else 'first'}, "
                   f"{'stream' if t.stream else 'JSON'}; {timeline(t, by_tag)}) failed outside the documented "
                   f"windows: status "
                   f"{t.status}, {t.error!r:.300}; docs/responses.md: a continuation fails only while its node "
                   f"is down, while Postgres is unreachable ('reads on other nodes answer 503 meanwhile', "
                   f"database_unavailable within SHIELDES_DB_REQUEST_TIMEOUT) or for a response not written "
                   f"'within SHIELDES_RESPONSES_READ_WAIT'")
    return out


def shape_ok(api: str, status: int, error: Any) -> bool:
    if not isinstance(error, dict):
        return False
    if api == "messages":
        inner = error.get("error")
        return error.get("type") == "error" and isinstance(inner, dict) and isinstance(inner.get("type"), str) \
            and isinstance(inner.get("message"), str)
    if status == -1:  # a stream's error event (or response.failed carrying the error)
        inner = error.get("response", {}).get("error") if error.get("type") == "response.failed" else error
        return isinstance(inner, dict) and isinstance(inner.get("message"), str) and "code" in inner
    inner = error.get("error")
    return isinstance(inner, dict) and all(k in inner for k in ("message", "type", "code")) \
        and (api != "socket" or error.get("type") == "error")


def check_shapes(turns: Sequence[Turn]) -> list[str]:
    out = []
    for t in turns:
        if t.status in (200, 0, -2, -3):
            continue
        if t.status >= 500 and t.status not in (502, 503, 504):
            out.append(f"{t.api} turn {t.tag} got a {t.status}: {t.error!r:.300} (errors are 4xx, or 502/503/504 "
                       f"with a documented code, never a 500)")
        elif not shape_ok(t.api, t.status, t.error):
            out.append(f"{t.api} turn {t.tag} got an error not in its API's shape: {t.status} {t.error!r:.300}")
    return out


def check_reported(turns: Sequence[Turn], upstream: Mapping[str, Sequence[tuple[int, int]]]) -> list[str]:
    """`upstream`: tag -> (prompt, completion tokens) the fake upstream reported, per time it served it."""
    out = []
    for t in turns:
        served = upstream.get(t.tag, ())
        if len(served) > 1:
            out.append(f"{t.api} turn {t.tag} was served upstream {len(served)} times")
        if t.status != 200:
            continue
        if not served:
            out.append(f"{t.api} turn {t.tag} completed but the upstream never served it")
        elif (t.input_tokens, t.output_tokens) != served[0]:
            out.append(f"{t.api} turn {t.tag}: the client was told usage {(t.input_tokens, t.output_tokens)}, "
                       f"the upstream reported {served[0]}")
    return out


def check_sockets(turns: Sequence[Turn], faults: Sequence[Fault]) -> list[str]:
    out = []
    for t in turns:
        if t.api != "socket" or t.ended_at is None:
            continue
        took = t.ended_at - t.sent_at
        allowed = SOCKET_BOUND + paused_within(faults, t.node, t.sent_at, t.ended_at)
        if t.status == -2 or took > allowed:
            out.append(f"socket turn {t.tag} on {t.node} waited {took:.1f} s for its end ({t.status}, "
                       f"{t.error!r:.200}); a turn ends with its terminal event, an error event or the close "
                       f"within {SOCKET_BOUND} s plus its node's pause ({allowed:.1f} s)")
    return out


def check_agents(turns: Sequence[Turn], reads: Mapping[str, Mapping[str, int]], faults: Sequence[Fault],
                 upstream: Mapping[str, Sequence[tuple[int, int]]]) -> list[str]:
    return (check_stored(turns, reads, faults) + check_failures(turns, faults) + check_shapes(turns)
            + check_reported(turns, upstream) + check_sockets(turns, faults))


def agent_figures(turns: Sequence[Turn]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for api in AGENT_APIS:
        mine = [t for t in turns if t.api == api]
        statuses: dict[int, int] = {}
        for t in mine:
            statuses[t.status] = statuses.get(t.status, 0) + 1
        rows.append((f"{api} turns", f"{len(mine)}, continuations {sum(1 for t in mine if t.previous)}, "
                                     f"outcomes {dict(sorted(statuses.items()))}"))
    return rows
