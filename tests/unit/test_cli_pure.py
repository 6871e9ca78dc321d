"""Pure parts of the CLI: durations, times, LIKE escaping, secret labels and the chain walk."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from shieldes.cli.common import split_list
from shieldes.errors import InvalidRequest
from shieldes.events.codec import GENESIS_HASH, chain_hash
from shieldes.events.queries import like_prefix
from shieldes.events.store import RecordedEvent
from shieldes.events.verify import verify_chain
from shieldes.timeparse import expiry, parse_duration, parse_time
from shieldes.views import secret_label

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_durations_and_times() -> None:
    assert parse_duration("90s", "d") == 90 and parse_duration("30d", "d") == 30 * 86400
    assert parse_duration(" 1.5h ", "d") == 5400 and parse_duration("2W", "d") == 14 * 86400
    for bad in ("", "30", "d", "-1d", "1y", "1e3d"):
        with pytest.raises(InvalidRequest):
            parse_duration(bad, "--expires-in")
    assert parse_time("2026-11-01", "t") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_time("2026-11-01", "t", end_of_day=True).hour == 23
    assert parse_time("2026-11-01T12:00:00Z", "t") == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert parse_time("2026-11-01T12:00:00+02:00", "t") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="malformed --since"):
        parse_time("yesterday", "--since")


def test_expiry_options() -> None:
    now = T0.timestamp()
    assert expiry(None, None, now) is None
    assert expiry("1d", None, now) == now + 86400
    assert expiry(None, "2027-01-01", now) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    for args in (("0s", None), (None, "2020-01-01"), ("1d", "2027-01-01"), ("99999999d", None)):
        with pytest.raises(InvalidRequest):
            expiry(*args, now)


def test_small_helpers() -> None:
    assert split_list(" a, b ,c") == ("a", "b", "c") and split_list(None) is None
    for bad in ("a,,b", "a,", ",", "a,a"):
        with pytest.raises(InvalidRequest):
            split_list(bad)
    with pytest.raises(InvalidRequest):
        split_list(" , ")
    assert like_prefix("virtual_key") == "virtual\\_key.%" and like_prefix("50%") == "50\\%.%"
    assert (
        secret_label("env:X") == "env:X"
        and secret_label("enc:abc") == "encrypted"
        and secret_label(None) is None
    )


def chain(n: int) -> list[RecordedEvent]:
    out, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        data = {"model": f"m{i}", "input_per_1m": 1.0, "output_per_1m": 2.0}
        h = chain_hash(
            prev,
            position=i * 2,
            stream="config",
            type_="pricing.set",
            version=1,
            data=data,
            metadata={"actor": "t"},
            recorded_at=T0,
        )
        out.append(RecordedEvent(i * 2, "config", "pricing.set", 1, data, {"actor": "t"}, T0, prev, h))
        prev = h
    return out


def test_verify_chain_finds_the_first_bad_position() -> None:
    events = chain(5)
    tip = events[-1]
    assert verify_chain(events, tip.position, tip.hash or "").ok
    assert verify_chain([], 0, GENESIS_HASH).ok

    edited = list(events)
    edited[2] = dataclasses.replace(edited[2], data={**edited[2].data, "input_per_1m": 0.0})
    report = verify_chain(edited, tip.position, tip.hash or "")
    assert (report.ok, report.bad_position, report.checked) == (False, 6, 2)

    meta = list(events)
    meta[0] = dataclasses.replace(meta[0], metadata={"actor": "mallory"})
    assert verify_chain(meta, tip.position, tip.hash or "").bad_position == 2

    deleted = events[:1] + events[2:]
    assert verify_chain(deleted, tip.position, tip.hash or "").bad_position == 6
    truncated = events[:-1]
    report = verify_chain(truncated, tip.position, tip.hash or "")
    assert report.bad_position == 10 and "log_head" in (report.reason or "")
