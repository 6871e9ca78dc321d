"""`shieldes routing set|list` and `provider add --region` for every kind."""

from __future__ import annotations

from tests.cli import count_events, ok, refused


def test_routing_set_list_and_default(database_url: str) -> None:
    url = database_url
    ok(url, "provider", "add", "eu", "--type", "openai", "--base-url", "http://eu.example/v1", "--models",
       "gpt-4o", "--region", "eu-west")
    assert ok(url, "provider", "list")[0]["options"] == {"region": "eu-west"}
    assert ok(url, "routing", "list") == [{"model": "gpt-4o", "strategy": "adaptive", "source": "default"}]
    assert ok(url, "routing", "set", "gpt-4o", "--strategy", "cost")["strategy"] == "cost"
    assert ok(url, "routing", "list")[0] == {"model": "gpt-4o", "strategy": "cost", "source": "set"}
    ok(url, "routing", "set", "gpt-4o", "--default")
    assert ok(url, "routing", "list")[0]["source"] == "default"

    before = count_events(url)
    assert "no provider serves 'nope'" in refused(url, "routing", "set", "nope", "--strategy", "cost")
    assert "--strategy" in refused(url, "routing", "set", "gpt-4o")
    assert "is not one of" in refused(url, "routing", "set", "gpt-4o", "--strategy", "fastest")
    assert count_events(url) == before
