"""The fold compaction writes rollups from carries the members of a delta this release does not know
(a newer release's counters): numeric ones summed per group, others dropped; and a fold of deltas
with only known members is the one it always was."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shieldes.events.catalog import UsageDelta, UsageRecorded
from shieldes.events.codec import DELTA_FIELDS, Codec
from shieldes.snapshots.rollups import Folder, GroupKey, fold_deltas

deltas = st.builds(
    UsageDelta, st.sampled_from(("a", "b")), st.sampled_from([None, "t1"]), st.sampled_from(["p1", "p2"]),
    st.just("m"), st.integers(480_000, 480_003), st.integers(0, 3), st.integers(0, 500), st.integers(0, 500),
    st.integers(0, 10**7), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2),
    st.integers(0, 2), st.integers(0, 2), st.integers(0, 10**6),
)
# what a newer release may add to a delta: counters (ints of any size), fractions, and non-numbers
unknown = st.dictionaries(
    st.sampled_from(("code_runs", "gpu_seconds", "region", "flag")),
    st.one_of(st.integers(-(10**20), 10**20), st.sampled_from((0.5, 0.25, 1.5)), st.just("eu"), st.booleans(),
              st.just({"nested": 1})),
    max_size=3,
)


def _stored(ds: list[UsageDelta]) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = Codec().encode(UsageRecorded("n", 1, 1, tuple(ds)))[2]["deltas"]
    return data


def _key(d: dict[str, Any]) -> GroupKey:
    return (d["hour"], d["key_id"], d["provider"], d["model"], d["team_id"] or "")


@given(st.lists(st.tuples(deltas, unknown), max_size=40))
def test_unknown_numeric_members_are_summed_per_group_and_known_sums_stay(items: list[tuple[UsageDelta, Any]]) -> None:
    plain = _stored([d for d, _ in items])
    newer = [{**d, **more} for d, (_, more) in zip(plain, items, strict=True)]
    known, carried = Folder(), Folder()
    known.add_data(plain)
    carried.add_data(newer)
    # the known members' fold is the one before (UsageDelta objects, the reference), with or without
    assert known.extras == {}
    assert known.rows() == carried.rows() == [
        (d.hour, d.key_id, d.provider, d.model, d.team_id or "", d.requests, d.prompt_tokens, d.completion_tokens,
         d.cost_nusd, d.images, d.audio_seconds, d.characters, d.web_searches, d.file_searches, d.containers,
         d.tools_nusd) for d in fold_deltas(d for d, _ in items)]
    expected: dict[GroupKey, dict[str, Any]] = {}
    for d in newer:
        for m, v in d.items():
            if m not in DELTA_FIELDS and isinstance(v, int | float) and not isinstance(v, bool):
                expected.setdefault(_key(d), {})[m] = expected.get(_key(d), {}).get(m, 0) + v
    assert carried.extras == expected


def test_the_databases_decimal_sums_come_back_as_json_numbers() -> None:
    f = Folder()
    f.add_extras([(1, "k", "p", "m", "", "code_runs", Decimal(10**20)), (1, "k", "p", "m", "", "gpu", Decimal("1.5")),
                  (1, "k", "p", "m", "", "code_runs", Decimal(1))])
    assert f.extras == {(1, "k", "p", "m", ""): {"code_runs": 10**20 + 1, "gpu": 1.5}}
    assert type(f.extras[(1, "k", "p", "m", "")]["code_runs"]) is int
