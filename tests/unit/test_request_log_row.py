"""A request's database row (RequestRecord.row), written out flat for the writer's sake, is the
row the field-by-field definition gives: the same values for any record a request can leave."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shieldes.projections.state import VirtualKey
from shieldes.requestlog.record import COLUMNS, INT8_MAX, RequestRecord, _count, _cut


def reference_row(rec: RequestRecord, node_id: str) -> tuple[Any, ...]:
    """The row as the columns define it, one helper per conversion."""
    key = rec.key
    latency = rec.t_end - rec.t0 if rec.t_end else 0.0

    def after_start(t: float) -> float | None:
        return round((t - rec.t0) * 1000.0, 3) if t else None

    return (
        rec.request_id, datetime.fromtimestamp(rec.started, UTC),
        datetime.fromtimestamp(rec.started + latency, UTC), node_id, rec.method, rec.route,
        _cut(rec.path), rec.status, rec.error_code,
        key.id if key else None, key.name if key else None, key.team_id if key else None,
        _cut(rec.model), rec.upstream_model, rec.deployment, len(rec.tried) if rec.tried else 0,
        rec.tried, rec.stream, round(latency * 1000.0, 3), after_start(rec.t_first_byte),
        after_start(rec.t_first_token), _count(rec.prompt_tokens), _count(rec.completion_tokens),
        _count(rec.cached_tokens), _count(rec.reasoning_tokens), _count(rec.cost_nusd), rec.client_ip,
        _cut(rec.user_agent), rec.trace_id, _cut(rec.error_message), rec.images, rec.audio_seconds, rec.characters,
        _count(rec.cache_write_tokens), _cut(rec.service_tier), rec.web_searches, rec.file_searches, rec.containers,
        _cut(rec.actor), rec.tags, _cut(rec.fallback),
    )


texts = st.none() | st.text(max_size=600)
counts = st.none() | st.integers(-(2**70), 2**70) | st.sampled_from([INT8_MAX, -INT8_MAX, INT8_MAX + 1, 0])
times = st.just(0.0) | st.floats(0.0, 1e6, allow_nan=False)
units = st.none() | st.integers(1, 10**12)  # counted by the gateway (images, seconds, characters)


@given(started=st.floats(0.0, 4e9, allow_nan=False), t0=st.floats(0.0, 1e6, allow_nan=False),
       t_end=times, first_byte=times, first_token=times, path=st.text(max_size=600), model=texts,
       user_agent=texts, error_code=texts, error_message=texts, key=st.none() | st.builds(
           VirtualKey, st.text(max_size=20), st.text(max_size=20), st.just("h"), st.just("sk-shd-x"),
           st.none() | st.text(max_size=20), st.none(), st.none()),
       tried=st.none() | st.lists(st.text(max_size=10), max_size=3), stream=st.booleans(),
       prompt=counts, completion=counts, cached=counts, written=counts, reasoning=counts, cost=counts,
       status=st.integers(0, 599), client_ip=texts, trace_id=texts, images=units, seconds=units, characters=units,
       tier=texts, tools=st.tuples(units, units, units), fallback=texts)
def test_the_row_is_the_columns_definition(started: float, t0: float, t_end: float, first_byte: float,
                                           first_token: float, path: str, model: str | None,
                                           user_agent: str | None, error_code: str | None,
                                           error_message: str | None,
                                           key: VirtualKey | None, tried: list[str] | None, stream: bool,
                                           prompt: int | None, completion: int | None, cached: int | None,
                                           written: int | None, reasoning: int | None, cost: int | None, status: int,
                                           client_ip: str | None, trace_id: str | None, images: int | None,
                                           seconds: int | None, characters: int | None, tier: str | None,
                                           tools: tuple[int | None, int | None, int | None],
                                           fallback: str | None) -> None:
    rec = RequestRecord("r1", started, t0, "POST", path)
    rec.t_end, rec.t_first_byte, rec.t_first_token = t_end, first_byte, first_token
    rec.model, rec.user_agent, rec.error_code, rec.key = model, user_agent, error_code, key
    rec.error_message = error_message
    rec.tried, rec.stream, rec.status, rec.client_ip, rec.trace_id = tried, stream, status, client_ip, trace_id
    rec.prompt_tokens, rec.completion_tokens, rec.cached_tokens = prompt, completion, cached
    rec.reasoning_tokens, rec.cost_nusd, rec.cache_write_tokens = reasoning, cost, written
    rec.images, rec.audio_seconds, rec.characters = images, seconds, characters
    rec.service_tier, rec.fallback = tier, fallback
    rec.web_searches, rec.file_searches, rec.containers = tools
    row = rec.row("node-1")
    assert row == reference_row(rec, "node-1")
    assert len(row) == len(COLUMNS)
