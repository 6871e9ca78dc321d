"""Aliases across two real node processes: an alias set, replaced (by a weighted model group) and
removed with the CLI is in force on both nodes without a restart, its fallback group (another
model) serves when every target is down, and the group serves while one of its deployments is."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests import pg
from tests.cluster.harness import MESSAGES, UPSTREAM_KEY_ENV, Cluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def pair(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    url = pg.fresh_database(pg_server)
    c = Cluster(url, tmp_path_factory.mktemp("aliases"), env_overrides={"SHIELDES_RETRY_BACKOFF": "0"})
    try:
        c.start_upstream()
        ref = f"env:{UPSTREAM_KEY_ENV}"
        c.admin(AddProvider("openai", "openai", c.upstream_url, ref, ("gpt-4o-mini",)),
                AddProvider("down", "openai", "http://127.0.0.1:1", ref, ("gpt-4o",)))
        for i in range(2):
            c.start(c.add_node(f"a{i + 1}"))
        for node in c.nodes:
            c.wait_ready(node)
        yield c
    finally:
        c.stop_all()
        pg.drop_database(pg_server, url)


def ask(base: str, key: str, model: str) -> tuple[int, str | None]:
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=10)
    try:
        chat = client.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
    except openai.APIStatusError as exc:
        return exc.status_code, None
    return 200, chat.model


def models(base: str, key: str) -> list[str]:
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=10)
    return sorted(m.id for m in client.models.list().data)


def test_alias_changes_apply_live_on_both_nodes(pair: Cluster) -> None:
    secret, created = pair.create_key("alias-user")
    pair.wait_position(created)
    assert [ask(n.base, secret, "public") for n in pair.nodes] == [(404, None), (404, None)]

    # every target down: the fallback group serves, on both nodes
    added = pair.cli("model", "alias", "public", "--target", "down/gpt-4o", "--fallback", "gpt-4o-mini")
    pair.wait_position(added, timeout=2.0)
    assert [ask(n.base, secret, "public") for n in pair.nodes] == [(200, "gpt-4o-mini")] * 2
    assert all("public" in models(n.base, secret) for n in pair.nodes)

    # replaced by a model group over two deployments (one down), no fallback: the group serves
    replaced = pair.cli("model", "alias", "public", "--target", "down/gpt-4o:1", "--target", "openai/gpt-4o-mini:2")
    pair.wait_position(replaced, timeout=2.0)
    assert [ask(n.base, secret, "public") for n in pair.nodes] == [(200, "gpt-4o-mini")] * 2

    removed = pair.cli("model", "remove", "public")
    pair.wait_position(removed, timeout=2.0)
    assert [ask(n.base, secret, "public") for n in pair.nodes] == [(404, None), (404, None)]
