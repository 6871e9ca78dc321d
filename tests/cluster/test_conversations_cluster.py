"""A conversation on two real node processes: each turn, sent to the other node right after the
previous turn's answer (JSON, or the terminal event of a stream) arrived, reads every item before it.
The fake upstream counts prompt tokens as words of the whole input, so a turn's input_tokens tell
whether the history reached the upstream."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.cluster.harness import Cluster, ready_nodes

pytestmark = pytest.mark.cluster
REPLY_WORDS = 5  # the cluster's fake upstream answers with this many words


@pytest.fixture(scope="module")
def cluster(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with ready_nodes(pg_server, tmp_path_factory.mktemp("conversations")) as c:
        yield c


def _input_tokens(client: openai.OpenAI, conversation: str, text: str, *, stream: bool) -> int:
    if not stream:
        answer = client.responses.create(model="gpt-4o-mini", input=text, conversation=conversation)
        assert answer.usage is not None
        return answer.usage.input_tokens
    with client.responses.create(model="gpt-4o-mini", input=text, conversation=conversation, stream=True) as events:
        done = [e for e in events if e.type == "response.completed"]
    assert len(done) == 1 and done[0].response.usage is not None
    return done[0].response.usage.input_tokens


def test_each_turn_on_the_other_node_reads_the_turns_before_it(cluster: Cluster) -> None:
    secret, created = cluster.create_key("conversing")
    cluster.wait_position(created)
    a, b = (openai.OpenAI(base_url=n.base + "/v1", api_key=secret, max_retries=0, timeout=15)
            for n in cluster.nodes)
    conv = a.conversations.create().id

    words_before = 0
    turns = [(a, "my name is Ada", False), (b, "what is my name?", False), (a, "say it once more", True),
             (b, "and now in capitals", True), (a, "thanks, that is all", False)]
    for n, (client, text, stream) in enumerate(turns):
        words = len(text.split())
        assert _input_tokens(client, conv, text, stream=stream) == words_before + words, f"turn {n + 1}"
        words_before += words + REPLY_WORDS
        other = b if client is a else a
        assert len(other.conversations.items.list(conv, limit=100).data) == 2 * (n + 1), f"items after turn {n + 1}"
