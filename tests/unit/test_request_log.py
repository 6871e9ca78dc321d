"""Pure parts of the request log: the bounded buffer's exact drop accounting, partition retention
decisions, body redaction and the query builder."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.requestlog.buffer import Buffer
from shieldes.requestlog.capture import REDACTED, Capture, compile_patterns, redact, wants
from shieldes.requestlog.partitions import day_of, expired, parse_partition, partition_name
from shieldes.requestlog.record import RequestRecord
from shieldes.requestlog.store import LogFilter, build_query, status_clause


@given(capacity=st.integers(1, 8),
       steps=st.lists(st.tuples(st.sampled_from(["add", "take", "ok", "fail"]), st.integers(1, 5)), max_size=60))
def test_buffer_writes_or_counts_every_record_once(capacity: int, steps: list[tuple[str, int]]) -> None:
    buf: Buffer[int] = Buffer(capacity)
    written: list[int] = []
    batch: list[int] | None = None
    n = 0
    for op, k in steps:
        if op == "add":
            for _ in range(k):
                buf.add(n)
                n += 1
                if capacity > 1:  # the newest is always kept
                    assert buf.items[-1] == n - 1
        elif op == "take" and batch is None:
            batch = buf.take(k)
            assert len(batch) <= max(1, capacity // 2)
        elif op == "ok" and batch is not None:
            written += batch
            buf.written()
            batch = None
        elif op == "fail" and batch is not None:
            buf.put_back(batch)
            batch = None
        held = len(buf.items) + len(batch or [])  # everything in memory, the batch being written included
        assert held == len(buf) <= capacity
    if batch is not None:
        buf.put_back(batch)
    while len(buf):
        written += buf.take(10**6)
        buf.written()
    kept = written
    assert len(kept) + buf.dropped == n == buf.added
    assert kept == sorted(kept) and len(set(kept)) == len(kept)  # order kept, nothing twice


def test_full_buffer_drops_the_oldest_waiting_never_the_batch_being_written() -> None:
    buf: Buffer[int] = Buffer(4)
    for i in range(6):
        buf.add(i)
    assert list(buf.items) == [2, 3, 4, 5] and buf.dropped == 2
    batch = buf.take(10)  # at most half the buffer: [2, 3] being written while 3 more arrive
    assert batch == [2, 3]
    for i in range(6, 9):
        buf.add(i)
    assert list(buf.items) == [7, 8] and len(buf) == 4 and buf.dropped == 5
    buf.put_back(batch)  # the write failed: the batch waits again, in front
    assert list(buf.items) == [2, 3, 7, 8] and buf.dropped == 5


def test_outage_retry_of_a_put_back_batch_keeps_the_buffer_bounded() -> None:
    """A first write fails at once, its retry hangs while the buffer overflows, then succeeds: what
    was held (at most `capacity`) is written and the rest was counted (the retry's batch used to
    be the whole buffer while just as many records again were kept behind it, all written)."""
    capacity = 20
    buf: Buffer[int] = Buffer(capacity)
    for i in range(7):
        buf.add(i)
    first = buf.take(5000)
    assert first == list(range(7))
    buf.put_back(first)  # the connection was refused at once
    for i in range(7, 25):
        buf.add(i)
    assert list(buf.items) == list(range(5, 25)) and buf.dropped == 5
    retry = buf.take(5000)  # this write hangs until the database is back
    assert retry == list(range(5, 5 + capacity // 2))
    for i in range(25, 45):
        buf.add(i)
        assert len(buf.items) + len(retry) == len(buf) <= capacity
    buf.written()  # it succeeded after all
    rest = buf.take(5000)
    assert retry + rest == list(range(5, 15)) + list(range(35, 45))  # the batch, then the newest
    assert buf.dropped == 45 - capacity


def test_a_buffer_of_one_drops_the_newcomer_while_its_record_is_written() -> None:
    buf: Buffer[int] = Buffer(1)
    buf.add(0)
    batch = buf.take(10)
    buf.add(1)  # nothing waiting to drop: the newcomer goes
    assert batch == [0] and len(buf) == 1 and buf.dropped == 1
    buf.written()
    buf.add(2)
    assert list(buf.items) == [2] and buf.dropped == 1


@given(st.integers(1, 50), st.integers(0, 200), st.integers(1, 30))
def test_the_batches_counted_at_a_wake_up_write_exactly_what_was_waiting(capacity: int, waiting: int,
                                                                         limit: int) -> None:
    buf: Buffer[int] = Buffer(capacity)
    for i in range(waiting):
        buf.add(i)
    held = len(buf)
    taken = 0
    for _ in range(buf.batches(held, limit)):
        batch = buf.take(limit)
        assert batch, "a counted batch found nothing to write"
        taken += len(batch)
        buf.written()
    assert taken == held and len(buf) == 0


def test_retention_keeps_whole_days_inside_the_window() -> None:
    days = [date(2026, 11, d) for d in range(1, 31)]
    assert expired(days, date(2026, 11, 30), 2) == days[:27]  # Nov 28 00:00 is the horizon
    assert expired(days, date(2026, 11, 30), 365) == []
    assert parse_partition(partition_name("request_log_rows", date(2026, 1, 2))) == ("request_log_rows",
                                                                                      date(2026, 1, 2))
    assert parse_partition("request_log_rows_default") is None
    assert day_of(86400 * 2 + 5) == date(1970, 1, 3)


def test_redaction_hides_keys_and_configured_patterns() -> None:
    patterns = compile_patterns([r"\b\d{4}-\d{4}-\d{4}-\d{4}\b"])
    text = ('{"api_key": "abc", "messages": [{"content": "my key sk-shd-AAAAAAAAAAAAAAAAAAAAAAAA and card '
            '1234-5678-9012-3456, Bearer abcdefghijkl and provider-secret-xyz"}]}')
    out = redact(text, patterns, ["provider-secret-xyz"])
    for secret in ("sk-shd-AAAA", "1234-5678", "abcdefghijkl", "provider-secret-xyz", '"abc"'):
        assert secret not in out
    assert out.count(REDACTED) == 5 and '"api_key": "[redacted]"' in out
    # an admin token or a console session pasted into a prompt
    pasted = "use shd-adm-Xk3qAAAAAAAAAAAAAAAAAAAA or shd-oidc-eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXNpZw then"
    assert redact(pasted, compile_patterns([])) == f"use {REDACTED} or {REDACTED} then"
    with pytest.raises(ValueError, match="bad redaction pattern"):
        compile_patterns(["("])


def test_capture_modes_and_size_cap() -> None:
    assert wants("all", 200, None, "/v1/chat/completions") and wants("errors", 429, "rate_limit_exceeded", "/v1/x")
    assert wants("errors", 200, "client_disconnected", "/chat/completions") and not wants("errors", 200, None, "/v1/x")
    assert not wants("off", 500, "x", "/v1/x")
    # the admin API and the console keep no body (secrets shown once, headers of MCP servers)
    assert not any(wants("all", 201, None, p) for p in ("/admin/v1/admin-tokens", "/admin/keys", "/ui/", "/ui"))
    assert wants("all", 404, "not_found", "/administrator") and wants("all", 404, "not_found", "/uix")
    cap = Capture("errors", 10)
    rec = RequestRecord("r1", 0.0, 0.0, "POST", "/v1/chat/completions")
    assert cap.row(rec, "n") is None
    rec.request_body = b"0123456789abcdef"
    row = cap.row(rec, "n")
    assert row is not None and row[3] == "0123456789" and row[5] is True


def test_query_filters() -> None:
    sql, params = build_query(LogFilter(key="k", status="4xx", model="m", request_id="r"), 10)
    assert "status >= %(s_lo)s AND status < %(s_hi)s" in sql and params["s_lo"] == 400
    assert "ORDER BY started_at DESC, request_id DESC LIMIT %(limit)s" in sql
    assert status_clause("429")[1] == {"s_code": 429}
    assert "error_code IS NOT NULL" in status_clause("error")[0]
    with pytest.raises(InvalidRequest, match="malformed status"):
        status_clause("teapot")
    sql, params = build_query(LogFilter(error_code="budget_exceeded"), 10)
    assert "error_code = %(error_code)s" in sql and params["error_code"] == "budget_exceeded"


def test_missing_provider_key_variable_is_reported_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    from shieldes.events.catalog import ProviderAdded
    from shieldes.gateway.config_check import ConfigWatch
    from shieldes.projections.config import apply_config
    from shieldes.projections.state import ConfigState

    def with_provider(state: ConfigState, name: str, ref: str) -> ConfigState:
        return apply_config(state, ProviderAdded(name, "openai", "http://u", ref, ("m",), 1.0))

    env = {"SET_KEY": "x"}
    watch = ConfigWatch(env)
    one = with_provider(ConfigState(), "a", "env:MISSING_KEY")
    assert watch.check(one) == [("a", "MISSING_KEY")]
    assert watch.check(one) == []  # same config: nothing new
    two = with_provider(one, "b", "env:SET_KEY")
    assert watch.check(two) == []  # still missing, already reported
    three = with_provider(two, "c", "env:OTHER_MISSING")
    assert watch.check(three) == [("c", "OTHER_MISSING")]
    assert sum("CONFIG ERROR" in r.getMessage() for r in caplog.records) == 2


def test_json_log_lines_carry_the_request_fields() -> None:
    import json
    import logging

    from shieldes.logformat import JsonFormatter

    rec = RequestRecord("rid-1", 1_700_000_000.0, 1.0, "POST", "/v1/chat/completions")
    rec.t_end, rec.status, rec.cost_nusd, rec.model = 1.5, 200, 2_500_000, "gpt-4o"
    line = logging.LogRecord("shieldes.access", logging.INFO, __file__, 1, "POST %s", ("x",), None)
    line.record, line.node_id = rec, "n1"
    out = json.loads(JsonFormatter().format(line))
    assert out["message"] == "POST x" and out["level"] == "info" and out["logger"] == "shieldes.access"
    assert (out["request_id"], out["node_id"], out["status"], out["latency_ms"]) == ("rid-1", "n1", 200, 500.0)
    assert out["cost_usd"] == 0.0025 and out["model"] == "gpt-4o"


def test_cached_and_reasoning_tokens_are_read_from_the_usage_details() -> None:
    from shieldes.providers.anthropic_translate import usage_from_anthropic
    from shieldes.providers.http import parse_usage

    usage = parse_usage({"prompt_tokens": 100, "completion_tokens": 40,
                         "prompt_tokens_details": {"cached_tokens": 64},
                         "completion_tokens_details": {"reasoning_tokens": 30}})
    assert usage is not None and (usage.cache_read_tokens, usage.reasoning_tokens) == (64, 30)
    plain = parse_usage({"prompt_tokens": 1, "completion_tokens": 2})
    assert plain is not None and (plain.cache_read_tokens, plain.reasoning_tokens) == (0, None)
    anthropic = usage_from_anthropic({"input_tokens": 5, "cache_read_input_tokens": 50, "output_tokens": 3})
    assert (anthropic.prompt_tokens, anthropic.cache_read_tokens) == (55, 50)
