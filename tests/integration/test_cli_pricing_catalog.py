"""`shieldes pricing list|import`: the shipped catalog is visible with its source, overrides replace
it, and LiteLLM's price file refreshes prices without rewriting what is already in force."""

from __future__ import annotations

from pathlib import Path

from tests.cli import count_events, invoke, ok, refused

PRICES = Path(__file__).resolve().parents[1] / "data" / "litellm_model_prices.json"
KINDS_COVERED = ("openai", "anthropic", "google", "bedrock", "mistral", "deepseek", "xai", "groq", "together")


def test_pricing_list_shows_defaults_and_overrides(database_url: str) -> None:
    rows = {r["model"]: r for r in ok(database_url, "pricing", "list")}
    sonnet = rows["claude-sonnet-4-5"]  # the model docs/providers.md uses
    assert (sonnet["input_per_1m"], sonnet["output_per_1m"], sonnet["source"]) == (3.0, 15.0, "default")
    assert (sonnet["cache_read_per_1m"], sonnet["cache_write_per_1m"]) == (0.3, 3.75)
    assert rows["gemini-2.5-pro"]["reasoning_per_1m"] == rows["gemini-2.5-pro"]["output_per_1m"] == 10.0
    assert {r["provider"] for r in rows.values()} >= set(KINDS_COVERED)
    assert rows["anthropic.claude-3-5-sonnet-20240620-v1:0"]["source"] == "default"

    ok(database_url, "pricing", "set", "claude-sonnet-4-5", "--input", "2", "--output", "10")
    ok(database_url, "pricing", "set", "house-model", "--input", "1", "--output", "1")
    overrides = ok(database_url, "pricing", "list", "--source", "override")
    assert [(r["model"], r["input_per_1m"], r["source"]) for r in overrides] == [
        ("claude-sonnet-4-5", 2.0, "override"), ("house-model", 1.0, "override")]
    assert [r["model"] for r in ok(database_url, "pricing", "list", "--model", "nova-pro")] == [
        "amazon.nova-pro-v1:0", "us.amazon.nova-pro-v1:0"]  # a Bedrock model and its inference profile
    table = invoke(database_url, "pricing", "list", "--model", "claude-sonnet-4-5")
    assert "override" in table.stdout and table.exit_code == 0


def test_pricing_import_litellm_file(database_url: str, tmp_path: Path) -> None:
    before = count_events(database_url)
    dry = ok(database_url, "pricing", "import", str(PRICES), "--dry-run")
    # gpt-4o and text-embedding-3-small equal the defaults; my-finetune is unknown here; dall-e-3 is no chat model
    changes = {c["name"]: c for c in dry["changes"]}
    assert {n: c["action"] for n, c in changes.items()} == {"claude-sonnet-4-5": "update", "gemini-2.5-flash": "update"}
    # the file gives no long-context tier or regional multiplier for it: the shipped ones are kept
    assert ("(was input $3/1M, output $15/1M, cache read $0.3/1M, cache write $3.75/1M, above 200000 prompt "
            "tokens: input $6/1M, output $22.5/1M, $0.01 per web search, regional x1.1)") in \
        changes["claude-sonnet-4-5"]["detail"] and dry["entries_left_out"] == 2
    # a cache price alone differs: read from cache_read_input_token_cost
    assert changes["gemini-2.5-flash"]["detail"] == (
        "input $0.3/1M, output $2.5/1M, cache read $0.075/1M, $0.035 per web search, flex x0.5, audio_input $1/1M "
        "(was input $0.3/1M, output $2.5/1M, cache read $0.03/1M, $0.035 per web search, flex x0.5, "
        "audio_input $1/1M)")
    assert any("gemini-2.5-flash: reasoning tokens are billed at the output price" in n for n in dry["notes"])
    assert count_events(database_url) == before
    done = ok(database_url, "pricing", "import", str(PRICES))
    assert done["events_appended"] == 2
    rows = {r["model"]: r for r in ok(database_url, "pricing", "list")}
    sonnet, flash = rows["claude-sonnet-4-5"], rows["gemini-2.5-flash"]
    assert (sonnet["input_per_1m"], sonnet["cache_read_per_1m"], sonnet["cache_write_per_1m"], sonnet["source"]) == (
        2.9, 0.3, 3.75, "override")
    assert (flash["cache_read_per_1m"], flash["reasoning_per_1m"], flash["source"]) == (0.075, 2.5, "override")
    assert ok(database_url, "pricing", "import", str(PRICES))["events_appended"] == 0  # nothing changed
    everything = ok(database_url, "pricing", "import", str(PRICES), "--all")
    assert [c["name"] for c in everything["changes"]] == ["my-finetune"]

    bad = tmp_path / "prices.json"
    bad.write_text('{"model_list": []}')
    assert "not a LiteLLM price file" in refused(database_url, "pricing", "import", str(bad))


def test_per_image_prices_are_shipped_set_and_listed(database_url: str) -> None:
    rows = {r["model"]: r for r in ok(database_url, "pricing", "list", "--model", "dall-e")}
    assert (rows["dall-e-2"]["per_image"], rows["dall-e-3"]["per_image"]) == (0.02, 0.04)
    assert rows["dall-e-3"]["source"] == "default"
    set_ = ok(database_url, "pricing", "set", "dall-e-3", "--input", "0", "--output", "0", "--per-image", "0.08")
    assert set_["per_image"] == 0.08
    assert [(r["model"], r["per_image"]) for r in ok(database_url, "pricing", "list", "--source", "override")] == [
        ("dall-e-3", 0.08)]
    assert refused(database_url, "pricing", "set", "dall-e-3", "--input", "0", "--output", "0", "--per-image", "-1")


def test_pricing_set_with_a_long_context_tier(database_url: str) -> None:
    shipped = {r["model"]: r for r in ok(database_url, "pricing", "list", "--model", "gemini-2.5-pro")}
    assert shipped["gemini-2.5-pro"]["long_context"]["input_per_1m"] == 2.5
    row = ok(database_url, "pricing", "set", "house-long", "--input", "1", "--output", "2",
             "--long-context-above", "128000", "--long-input", "2", "--long-output", "4", "--long-cache-read", "0.5")
    assert row["long_context"] == {"above_tokens": 128000, "input_per_1m": 2.0, "output_per_1m": 4.0,
                                   "cache_read_per_1m": 0.5}
    listed = ok(database_url, "pricing", "list", "--model", "house-long")
    assert listed[0]["long_context"] == row["long_context"]
    before = count_events(database_url)
    half = refused(database_url, "pricing", "set", "house-long", "--input", "1", "--output", "2",
                   "--long-input", "2")
    assert "--long-context-above, --long-input and --long-output" in half
    bad = refused(database_url, "pricing", "set", "house-long", "--input", "1", "--output", "2",
                  "--long-context-above", "0", "--long-input", "2", "--long-output", "4")
    assert "--long-context-above must be a whole number" in bad
    assert count_events(database_url) == before


def test_pricing_set_with_prices_by_modality(database_url: str) -> None:
    shipped = {r["model"]: r for r in ok(database_url, "pricing", "list", "--model", "audio")}
    assert shipped["gpt-4o-audio-preview"]["modalities"] == {"audio_input": 40.0, "audio_output": 80.0}
    row = ok(database_url, "pricing", "set", "house-audio", "--input", "1", "--output", "2",
             "--modality", "audio_input=5", "--modality", "audio_output=7.5")
    assert row["modalities"] == {"audio_input": 5.0, "audio_output": 7.5}
    assert ok(database_url, "pricing", "list", "--model", "house-audio")[0]["modalities"] == row["modalities"]
    before = count_events(database_url)
    unknown = refused(database_url, "pricing", "set", "house-audio", "--input", "1", "--output", "2",
                      "--modality", "video_input=1")
    assert "use one of audio_input, audio_cache_read" in unknown
    assert "expected NAME=NUMBER" in refused(database_url, "pricing", "set", "house-audio", "--input", "1",
                                             "--output", "2", "--modality", "audio_input")
    assert count_events(database_url) == before


def test_pricing_import_reads_litellm_audio_and_image_token_prices(database_url: str, tmp_path: Path) -> None:
    import json

    from shieldes.importers.export import _litellm_extras
    from shieldes.importers.prices import litellm_price
    from shieldes.projections.state import Price

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({
        "gpt-4o-audio-preview": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
                                 "output_cost_per_token": 1e-05, "input_cost_per_audio_token": 4.2e-05,
                                 "output_cost_per_audio_token": 8e-05, "cache_read_input_audio_token_cost": 2.5e-06},
        "gpt-image-1": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 5e-06,
                        "output_cost_per_token": 4e-05, "cache_read_input_token_cost": 1.25e-06,
                        "input_cost_per_image_token": 1e-05, "output_cost_per_image_token": 4e-05}}))
    dry = ok(database_url, "pricing", "import", str(prices), "--dry-run")
    # gpt-image-1's are the shipped ones; the audio model's audio input and cached audio differ
    assert {c["name"]: c["action"] for c in dry["changes"]} == {"gpt-4o-audio-preview": "update"}
    assert "audio_input $42/1M" in dry["changes"][0]["detail"]
    ok(database_url, "pricing", "import", str(prices))
    row = ok(database_url, "pricing", "list", "--model", "gpt-4o-audio-preview")[0]
    assert row["modalities"] == {"audio_cache_read": 2.5, "audio_input": 42.0, "audio_output": 80.0}
    assert ok(database_url, "pricing", "import", str(prices))["events_appended"] == 0
    # a LiteLLM config export writes them back in LiteLLM's fields, which read back the same
    entry = json.loads(prices.read_text())["gpt-4o-audio-preview"]
    price = litellm_price("m", [entry], "m")
    assert price is not None and price.modalities == (("audio_cache_read", 2.5), ("audio_input", 42.0),
                                                      ("audio_output", 80.0))
    exported = _litellm_extras(Price(2.5, 10.0, modalities=price.modalities))
    assert {k: round(v, 12) for k, v in exported.items()} == {
        "input_cost_per_audio_token": 4.2e-05, "output_cost_per_audio_token": 8e-05,
        "cache_read_input_audio_token_cost": 2.5e-06}
