"""Process log lines: the access log's own path writes the same lines `logging` would, one write
per event-loop turn, every line in the order it was logged; anything but the process's own
handler gets them through `logging`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Iterator

import pytest

from shieldes.logformat import TEXT_FORMAT, AccessLog, JsonFormatter, LineHandler, access_message
from shieldes.projections.state import VirtualKey
from shieldes.requestlog.record import RequestRecord


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


@pytest.fixture
def root_handler() -> Iterator[tuple[LineHandler, CountingStream]]:
    """One LineHandler where every `shieldes.*` line ends (as `logformat.configure` leaves the root
    logger; set on `shieldes`, which stops there, since pytest adds its own handlers to the root)."""
    top = logging.getLogger("shieldes")
    saved = list(top.handlers), top.level, top.propagate
    stream = CountingStream()
    handler = LineHandler(stream, logging.Formatter(TEXT_FORMAT))
    top.handlers, top.propagate = [handler], False
    top.setLevel(logging.INFO)
    try:
        yield handler, stream
    finally:
        top.handlers, top.level, top.propagate = saved


def _alone(handler: LineHandler) -> None:
    """Leave the process's handler alone on `shieldes` again, as `configure` does: pytest (9.2 on)
    also attaches its capture handlers to loggers that do not propagate, when each test's call
    starts, after the fixture ran."""
    logging.getLogger("shieldes").handlers = [handler]


def _record(rid: str = "rid-1") -> RequestRecord:
    rec = RequestRecord(rid, 1_700_000_000.0, 10.0, "POST", "/v1/chat/completions")
    rec.t_end, rec.status, rec.model, rec.cost_nusd = 10.0123, 200, "gpt-4o", 2_500_000
    rec.key = VirtualKey("k1", "app", "h", "sk-app", None, None, None)
    rec.attempt("openai-1")
    return rec


def test_the_access_line_is_the_line_logging_would_write(root_handler: tuple[LineHandler, CountingStream]) -> None:
    handler, stream = root_handler
    _alone(handler)
    rec = _record()
    access = AccessLog("n1")
    assert access.handler is handler  # the fast path is taken
    access(rec)
    fast = stream.getvalue()
    via_logging = logging.Formatter(TEXT_FORMAT).format(
        logging.LogRecord("shieldes.access", logging.INFO, __file__, 1, access_message(rec), None, None))
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(stamp + r" INFO shieldes\.access: .*\n", fast)
    assert fast.split(" ", 2)[2] == via_logging.split(" ", 2)[2] + "\n"
    assert fast.endswith("POST /v1/chat/completions 200 12.3ms key=app model=gpt-4o deployment=openai-1 "
                         "attempts=1 error=- rid=rid-1\n")


def _odd(kind: str) -> RequestRecord:
    rec = RequestRecord("rid-odd", 1_700_000_000.0, 10.0, "POST", "/v1/ch\u00e4t/completions%s?")
    rec.t_end, rec.status = 10.0, 429
    if kind == "failed":  # no key, no model, several attempts, an error
        rec.error_code, rec.t_end = "rate_limited", 10.9999
        rec.attempt("a")
        rec.attempt("b%d")
    elif kind == "refused":  # refused before a handler: nothing but the request
        rec.method, rec.status, rec.error_code = "UNKNOWN", 400, "malformed_request"
    return rec


@pytest.mark.parametrize("kind", ["failed", "refused"])
def test_the_access_line_is_the_message_whatever_the_record_holds(
        root_handler: tuple[LineHandler, CountingStream], kind: str) -> None:
    handler, stream = root_handler
    _alone(handler)
    rec = _odd(kind)
    AccessLog("n1")(rec)
    assert stream.getvalue().split(": ", 1)[1] == access_message(rec) + "\n"


def test_json_access_lines_carry_the_request_fields(root_handler: tuple[LineHandler, CountingStream]) -> None:
    handler, stream = root_handler
    _alone(handler)
    handler.setFormatter(JsonFormatter())
    handler.json = True
    AccessLog("n1")(_record())
    out = json.loads(stream.getvalue())
    assert (out["level"], out["logger"]) == ("info", "shieldes.access")
    assert (out["request_id"], out["node_id"]) == ("rid-1", "n1")
    assert out["cost_usd"] == 0.0025 and out["key_name"] == "app" and out["failover_path"] == ["openai-1"]
    assert out["message"].startswith("POST /v1/chat/completions 200 ")
    assert out["started_at"] == "2023-11-14T22:13:20+00:00"  # as the request log's rows print it


def test_access_lines_of_one_loop_turn_are_one_write_and_every_line_keeps_its_order(
        root_handler: tuple[LineHandler, CountingStream]) -> None:
    handler, stream = root_handler
    _alone(handler)
    access = AccessLog("n1")

    async def turn() -> tuple[int, int]:
        access(_record("r1"))
        access(_record("r2"))
        queued_only = stream.writes  # access lines wait for the end of the turn
        logging.getLogger("shieldes.x").warning("between")  # written at once, after what waits
        after_warning = stream.writes
        access(_record("r3"))
        await asyncio.sleep(0)  # the turn ends: r3 goes out
        await asyncio.sleep(0)
        return queued_only, after_warning

    assert asyncio.run(turn()) == (0, 1)
    assert stream.writes == 2
    lines = stream.getvalue().splitlines()
    assert [line.rsplit("rid=", 1)[-1] if "rid=" in line else line.split(": ", 1)[1] for line in lines] == \
        ["r1", "r2", "between", "r3"]


def test_access_lines_of_turns_close_together_wait_for_one_write_and_a_lone_line_none(
        root_handler: tuple[LineHandler, CountingStream]) -> None:
    """A request a turn at a moderate load: one write syscall for the lines of ACCESS_LINES_WAIT s,
    not one each; after a quiet spell a line goes out at the end of its turn, with no timer."""
    from shieldes.logformat import ACCESS_LINES_WAIT

    handler, stream = root_handler
    _alone(handler)
    access = AccessLog("n1")

    async def turns() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        access(_record("r0"))
        await asyncio.sleep(0)
        lone = stream.writes  # the first line: out at the end of its turn
        began = loop.time()
        for i in range(1, 6):  # five more turns, each with a line, within the wait
            access(_record(f"r{i}"))
            await asyncio.sleep(0)
        waiting = stream.writes
        while stream.writes == waiting and loop.time() < began + 10:
            await asyncio.sleep(0.005)
        assert loop.time() - began >= ACCESS_LINES_WAIT * 0.9  # (a timer may fire a hair early)
        return lone, waiting, stream.writes

    assert asyncio.run(turns()) == (1, 1, 2)
    assert [line.rsplit("rid=", 1)[-1] for line in stream.getvalue().splitlines()] == [f"r{i}" for i in range(6)]


def test_outside_a_loop_and_after_a_closed_loop_lines_are_written_at_once(
        root_handler: tuple[LineHandler, CountingStream]) -> None:
    handler, stream = root_handler
    _alone(handler)

    async def queue_and_close() -> None:
        logging.getLogger("shieldes.x").info("queued in a loop")

    loop = asyncio.new_event_loop()
    loop.run_until_complete(queue_and_close())
    loop.close()  # its turn-end callback never runs
    logging.getLogger("shieldes.x").info("after")
    assert stream.getvalue().count("\n") == 2 and stream.getvalue().index("queued") < stream.getvalue().index("after")
    handler.flush()


def test_access_lines_ask_asyncio_for_the_loop_once_per_loop_and_go_out_at_once_outside_one(
        root_handler: tuple[LineHandler, CountingStream], monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 asyncio's running-loop lookup is a getpid syscall (its fork check): the
    access log keeps the loop its last line was queued in while it runs on the same thread."""
    import shieldes.logformat as logformat

    handler, stream = root_handler
    _alone(handler)
    asked: list[object] = []
    lookup = logformat._get_running_loop

    def counted() -> asyncio.AbstractEventLoop | None:
        asked.append(None)
        return lookup()

    monkeypatch.setattr(logformat, "_get_running_loop", counted)
    monkeypatch.setattr(logformat, "ACCESS_LINES_WAIT", 0.0)  # a write every turn
    access = AccessLog("n1")

    async def turns() -> int:
        for i in range(3):
            access(_record(f"r{i}"))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return stream.writes

    assert asyncio.run(turns()) == 3 and len(asked) == 1  # a write a turn, one lookup
    access(_record("outside"))  # that loop is closed: asked again, none running, written at once
    assert stream.writes == 4 and stream.getvalue().endswith("rid=outside\n") and len(asked) == 2
    assert asyncio.run(turns()) == 7 and len(asked) == 3  # a new loop: asked once again


def test_access_lines_go_through_logging_when_someone_else_handles_them(
        root_handler: tuple[LineHandler, CountingStream], caplog: pytest.LogCaptureFixture) -> None:
    handler, stream = root_handler
    _alone(handler)
    access_logger = logging.getLogger("shieldes.access")
    access_logger.addHandler(caplog.handler)
    try:
        access = AccessLog("n1")
        assert access.handler is None  # caplog's handler is one more place lines go
        access(_record())
    finally:
        access_logger.removeHandler(caplog.handler)
    assert stream.getvalue().count("shieldes.access") == 1  # the process's handler still gets it, once
    [line] = [r for r in caplog.records if r.name == "shieldes.access"]
    assert line.getMessage().endswith("rid=rid-1") and line.record.request_id == "rid-1"  # type: ignore[attr-defined]


def test_no_access_line_below_the_log_level(root_handler: tuple[LineHandler, CountingStream]) -> None:
    handler, stream = root_handler
    _alone(handler)
    logging.getLogger("shieldes").setLevel(logging.WARNING)
    AccessLog("n1")(_record())
    assert stream.getvalue() == ""


def test_a_level_change_applies_from_the_next_second(root_handler: tuple[LineHandler, CountingStream]) -> None:
    """Whether access lines pass the level is read once a second, with the line's date."""
    handler, stream = root_handler
    _alone(handler)
    access = AccessLog("n1")
    access(_record("r1"))
    logging.getLogger("shieldes").setLevel(logging.WARNING)
    began = int(time.time())
    while int(time.time()) == began:  # (the clock's next second)
        time.sleep(0.005)
    access(_record("r2"))
    assert "rid=r1" in stream.getvalue() and "rid=r2" not in stream.getvalue()
