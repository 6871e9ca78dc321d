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
        elif op == "take" and batch is None:
            batch = buf.take(k)
        elif op == "ok" and batch is not None:
            written += batch
            buf.written()
            batch = None
        elif op == "fail" and batch is not None:
            buf.put_back(batch)
            batch = None
        assert len(buf) <= capacity
    if batch is not None:
        buf.put_back(batch)
    rest = buf.take(10**6)
    kept = written + rest
    assert len(kept) + buf.dropped == n == buf.added
    assert kept == sorted(kept) and len(set(kept)) == len(kept)  # order kept, nothing twice


def test_full_buffer_drops_the_oldest() -> None:
    buf: Buffer[int] = Buffer(3)
    for i in range(5):
        buf.add(i)
    assert list(buf.items) == [2, 3, 4] and buf.dropped == 2
    batch = buf.take(2)  # [2, 3] being written while 3 more arrive: 2 and 3 are owed
    for i in range(5, 8):
        buf.add(i)
    assert len(buf) == 3
    buf.put_back(batch)  # the write failed: the owed go
    assert list(buf.items) == [5, 6, 7] and buf.dropped == 5


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
    with pytest.raises(ValueError, match="bad redaction pattern"):
        compile_patterns(["("])


def test_capture_modes_and_size_cap() -> None:
    assert wants("all", 200, None) and wants("errors", 429, "rate_limit_exceeded")
    assert wants("errors", 200, "client_disconnected") and not wants("errors", 200, None)
    assert not wants("off", 500, "x")
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
