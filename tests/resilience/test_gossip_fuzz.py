"""Fuzzing the gossip receiver of a running node (hypothesis): random bytes, random signatures,
correctly signed garbage, and correctly signed States with arbitrary field values (a buggy peer).
Nothing raises, every message is accepted or refused-and-counted, and the node serves on."""

from __future__ import annotations

import openai
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.cluster import gossip_pb2
from shieldes.cluster.gossip import seal, sign
from tests.resilience.support import CLUSTER_SECRET, MESSAGES, in_process_cluster

SECRET = CLUSTER_SECRET.encode()
i64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=12)
subjects = st.sampled_from(["k:", "t:", "key:", ""]).flatmap(lambda p: text.map(lambda t: p + t))
states = st.builds(
    lambda node, epoch, seq, head, windows, pending, res, health, seen: _state(
        node, epoch, seq, head, windows, pending, res, health, seen),
    st.sampled_from(["peer-a", "peer-b", ""]) | text, i64, i64, i64,
    st.lists(st.tuples(subjects, st.sampled_from(["min", "rpm", ""]) | text, i64, i64, i64, i64), max_size=4),
    st.lists(st.tuples(i64, i64, subjects, i64, i64, i64, i64), max_size=4),
    st.lists(st.tuples(subjects, i64, i64), max_size=3),
    st.lists(st.tuples(text, st.floats(), st.floats(), i64, st.booleans()), max_size=3),
    st.lists(st.tuples(text, i64, i64), max_size=3),
)


def _state(node: str, epoch: int, seq: int, head: int, windows: list, pending: list, res: list,  # type: ignore[type-arg]
           health: list, seen: list) -> gossip_pb2.State:  # type: ignore[type-arg]
    s = gossip_pb2.State(node_id=node, boot_epoch=epoch, seq=seq, log_head=head)
    for subject, window, start, req, tok, allowance in windows:
        s.windows.add(subject=subject, window=window, start=start, requests=req, tokens=tok, allowance=allowance)
    for fe, fs, subject, day, req, tok, cost in pending:
        s.pending.add(flush_epoch=fe, flush_seq=fs, subject=subject, day=day, requests=req, tokens=tok,
                      cost_nusd=cost)
    for subject, reserved, released in res:
        s.reservations.add(subject=subject, reserved_nusd=reserved, released_nusd=released)
    for dep, lat, err, req, open_ in health:
        s.health.add(deployment=dep, latency_ms=lat, error_rate=err, requests=req, open=open_)
    for node_id, e, q in seen:
        s.seen.add(node_id=node_id, boot_epoch=e, seq=q)
    return s


def envelopes() -> st.SearchStrategy[gossip_pb2.Envelope]:
    raw = st.binary(max_size=200)
    return st.one_of(
        st.builds(lambda p, s: gossip_pb2.Envelope(payload=p, signature=s), raw, st.binary(max_size=40)),
        raw.map(lambda p: gossip_pb2.Envelope(payload=p, signature=sign(SECRET, p))),
        raw.map(lambda p: zstandard.ZstdCompressor().compress(p)).map(
            lambda p: gossip_pb2.Envelope(payload=p, signature=sign(SECRET, p))),
        states.map(lambda s: seal(s, SECRET)),
        states.map(lambda s: seal(s, b"not-the-secret")),
    )


async def test_fuzzed_gossip_never_breaks_a_node(database_url: str) -> None:
    async with in_process_cluster(database_url, 1) as c:
        node = c.nodes[0]
        secret = await c.create_key("fuzz", rpm=1000, budget_usd=100.0)
        assert node.cluster is not None and node.cluster.gossip is not None
        gossip = node.cluster.gossip
        calls = [0]

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(envelopes())
        def receive(envelope: gossip_pb2.Envelope) -> None:
            ack = gossip.receive(envelope)
            calls[0] += 1
            assert ack.accepted or ack.reason in ("signature", "malformed", "stale", "self")

        receive()
        st_ = gossip.stats
        assert st_.rejected_signature + st_.rejected_malformed > 0 and st_.received > 0
        assert node.cluster._prune() is None  # maintenance copes with whatever was merged
        client = openai.AsyncOpenAI(base_url=c.base(0) + "/v1", api_key=secret, max_retries=0)
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        except openai.APIStatusError as exc:  # a peer may have gossiped spend or counts: a clean refusal
            assert exc.status_code == 429, exc
        finally:
            await client.close()
