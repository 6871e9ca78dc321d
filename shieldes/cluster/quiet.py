"""Quiet rounds (pure): when every-peer gossip may leave a round out, and which messages call for
an answer.

With every peer every round (the default), two idle nodes used to trade a message each way every
gossip interval forever: each message acknowledges the other's last one (`seen`), so each side
always had something "changed" to send. Acknowledgements alone are not worth a round: a round goes
out only when it carries news of this node (an entry other than an acknowledgement changed, or the
log head moved), when a target needs the whole state (first contact, `need_full`, anti-entropy),
when a peer's message calls for an answer (below), when a push of the previous round failed, and
at least every `keepalive` seconds (liveness: peers hear from this node and see its pushes taken).

A message calls for an answer when it carries news, is a whole state, or follows a pause of its
sender (sent more than PAUSE_ROUNDS gossip intervals after its previous one: rounds were left
out). Sequences count messages: a round left out takes none. The answer is the receiver's next round,
which acknowledges it; an answer that is only an acknowledgement, sent right after the previous
round, calls for none, so the exchange ends there. A claim (limits.py) is news: the peers'
acknowledgements that end a limit round still come one round later, as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from shieldes.cluster import gossip_pb2
from shieldes.cluster.delta import Entry

ACK_KINDS = frozenset("s")  # entries that only acknowledge (delta.flatten's "s": seen)
PAUSE_ROUNDS = 2  # gossip intervals between two messages of a sender after which it was quiet


def own_news(changed: Iterable[Entry], gone: Iterable[Entry], head: int, sent_head: int) -> bool:
    """This round's own component differs from the previous one in more than acknowledgements."""
    return head != sent_head or any(e[0] not in ACK_KINDS for e in changed) or any(
        e[0] not in ACK_KINDS for e in gone)


def carries_news(msg: gossip_pb2.State, held_head: int | None) -> bool:
    """A received message holds more than acknowledgements: entries, a whole state, a moved log head
    (`held_head`: the sender's head as held before it, None if its boot is not held)."""
    return bool(not msg.base_seq or msg.windows or msg.relayed or msg.pending or msg.unflushed
                or msg.reservations or msg.health or msg.health_removed
                or held_head is None or msg.log_head > held_head)


def calls_for_answer(msg: gossip_pb2.State, last_sent_ms: int | None, held_head: int | None, *,
                     pause_ms: float) -> bool:
    """`msg` wants an acknowledgement by the receiver's next round: it carries news, or its sender
    was quiet before it (sent more than `pause_ms` after the sender's previous accepted message,
    sent at `last_sent_ms`; both stamps are the sender's clock)."""
    after_pause = last_sent_ms is None or msg.sent_at_ms - last_sent_ms > pause_ms
    return after_pause or carries_news(msg, held_head)


def round_due(*, news: bool, owed: bool, retry: bool, whole: bool, since_push: float, keepalive: float) -> bool:
    """Whether a round goes out (`keepalive` 0: every round)."""
    return keepalive <= 0 or news or owed or retry or whole or since_push >= keepalive
