"""POST /v1/images/edits and /v1/images/variations through a real node and the official openai SDK,
against the fake upstream's wire format (tests/fake_media.py): the multipart upload passed through
byte for byte but for its model, what was billed (usage_daily and the request log), the body limit,
budgets, rate limits, failover, Azure deployments and the AzureOpenAI client."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, SetModelAlias, SetPricing
from shieldes.projections.state import AliasTarget
from tests.fake_media import EDIT_IMAGE_TOKENS, IMAGE_TOKENS, PNG
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness
from tests.integration.test_media_routes import REF, client_for, logged

PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8 + b"\r\n--not-the-boundary\r\n"  # a file as sent
MASK = b"\x89PNG\r\n\x1a\n" + b"\x00" * 512
EDIT = "/v1/images/edits"
VARIATION = "/v1/images/variations"


def files_sent(h: Harness, up: FakeUpstream, path: str) -> list[bytes]:
    """The image files the upstream's last request to `path` carried, as its own form parser read them."""
    body = up.last(path).body
    given = body.get("image", body.get("image[]"))
    return [f["bytes"] for f in (given if isinstance(given, list) else [given])]


async def test_image_edits_pass_the_upload_through_billed_by_usage_or_per_image(database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=1,
                       max_body_bytes=64 * 1024) as h:
        await h.admin(AddProvider("oa", "openai", up.url, REF, ("gpt-image-1", "dall-e-2")))
        await h.admin(AddProvider("oa2", "openai", up.url, REF, ("gpt-image-1",)))
        await h.admin(AddProvider("az", "azure", up.url, REF, ("gpt-image-eu",), options={"api_version": "2025-04-01"}))
        await h.admin(AddProvider("claude", "anthropic", up.url, REF, ("claude-pics",)))
        await h.admin(SetPricing("gpt-image-eu", 5, 40))  # an Azure deployment's own name, priced
        secret = await h.create_key("app", budget_usd=1.0)
        tight = await h.create_key("tight", budget_usd=0.05)
        narrow = await h.create_key("narrow", models=("dall-e-2",))
        limited = await h.create_key("limited", rpm=1)
        await h.sync()
        client = client_for(h, secret)
        prompt = "add a red hat"  # 4 words

        # pinned, with a mask: the upstream gets its own model name, the files' bytes as sent
        edited = await client.images.edit(model="oa/gpt-image-1", image=("photo.png", PHOTO, "image/png"),
                                          mask=("mask.png", MASK, "image/png"), prompt=prompt)
        assert edited.data is not None and edited.data[0].b64_json == PNG
        assert edited.usage is not None and edited.usage.output_tokens == IMAGE_TOKENS
        sent = up.last(EDIT)
        assert sent.body["model"] == "gpt-image-1" and sent.body["prompt"] == prompt
        assert sent.body["image"]["bytes"] == PHOTO and sent.body["mask"]["bytes"] == MASK
        assert sent.raw.count(PHOTO) == 1 and sent.headers["content-type"].startswith("multipart/form-data")
        assert sent.headers["authorization"] == "Bearer " + UPSTREAM_KEY

        # several images as `image[]`
        await client.images.edit(model="gpt-image-1", image=[("a.png", PHOTO, "image/png"), ("b.png", MASK)],
                                 prompt=prompt)
        assert files_sent(h, up, EDIT) == [PHOTO, MASK] and "image[]" in up.last(EDIT).body

        # streamed: the partial and completed events as they come, billed by the completed event's usage
        stream = await client.images.edit(model="gpt-image-1", image=("photo.png", PHOTO), prompt=prompt,
                                          stream=True, partial_images=1)
        events = [e async for e in stream]
        assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
        assert up.last(EDIT).body["stream"] == "true"

        # dall-e-2, no model named (OpenAI's default): sent on as it came, billed per image ($0.02)
        async with aiohttp.ClientSession() as s:
            form = aiohttp.FormData()
            form.add_field("image", PHOTO, filename="photo.png", content_type="image/png")
            form.add_field("prompt", prompt)
            form.add_field("n", "2")
            async with s.post(h.base + "/images/edits", data=form,
                              headers={"Authorization": f"Bearer {secret}"}) as r:
                answer = await r.json()
                assert r.status == 200, answer
        assert [d["url"] for d in answer["data"]] == ["https://images.example/edit-0.png",
                                                      "https://images.example/edit-1.png"]
        assert "model" not in up.last(EDIT).body

        up.inject(EDIT, status=503, times=1)  # one deployment fails, the other serves
        before = len(up.requests_to(EDIT))
        await client.images.edit(model="gpt-image-1", image=("photo.png", PHOTO), prompt=prompt)
        assert len(up.requests_to(EDIT)) == before + 2

        # Azure: the deployment's URL with its api-version, the key in `api-key`
        await client.images.edit(model="gpt-image-eu", image=("photo.png", PHOTO), prompt=prompt)
        sent = up.last()
        assert sent.path == "/openai/deployments/gpt-image-eu/images/edits"
        assert sent.query == {"api-version": "2025-04-01"}
        assert sent.headers["api-key"] == UPSTREAM_KEY and sent.body["model"] == "gpt-image-eu"
        assert sent.body["image"]["bytes"] == PHOTO

        calls = len(up.requests)
        with pytest.raises(openai.APIStatusError) as too_big:  # SHIELDES_MAX_BODY_BYTES, before the call
            await client.images.edit(model="gpt-image-1", image=("big.png", b"x" * (65 * 1024)), prompt=prompt)
        assert too_big.value.status_code == 413 and "SHIELDES_MAX_BODY_BYTES" in too_big.value.message
        with pytest.raises(openai.RateLimitError) as spent:  # 3 x $0.02 held before the call: over $0.05
            await client_for(h, tight).images.edit(model="dall-e-2", image=("p.png", PHOTO), prompt=prompt, n=3)
        assert spent.value.code == "budget_exceeded"
        with pytest.raises(openai.PermissionDeniedError):
            await client_for(h, narrow).images.edit(model="gpt-image-1", image=("p.png", PHOTO), prompt=prompt)
        with pytest.raises(openai.BadRequestError) as kind:
            await client.images.edit(model="claude-pics", image=("p.png", PHOTO), prompt=prompt)
        assert kind.value.code == "unsupported_endpoint" and "azure, openai" in kind.value.message
        with pytest.raises(openai.BadRequestError) as many:
            await client.images.edit(model="dall-e-2", image=("p.png", PHOTO), prompt=prompt, n=11)
        assert many.value.param == "n"
        async with aiohttp.ClientSession() as s:
            form = aiohttp.FormData(default_to_multipart=True)
            form.add_field("prompt", prompt)
            form.add_field("model", "gpt-image-1")
            async with s.post(h.base + "/v1/images/edits", data=form,
                              headers={"Authorization": f"Bearer {secret}"}) as r:
                missing = await r.json()
                assert r.status == 400 and missing["error"]["param"] == "image", missing
        assert len(up.requests) == calls
        await client_for(h, limited).images.edit(model="dall-e-2", image=("p.png", PHOTO), prompt=prompt)
        made = 1  # (a third call, should the first two straddle a minute)
        with pytest.raises(openai.RateLimitError) as rpm:
            for _ in range(2):
                await client_for(h, limited).images.edit(model="dall-e-2", image=("p.png", PHOTO), prompt=prompt)
                made += 1
        assert rpm.value.code == "rate_limit_exceeded"

        await h.flush()
        one = 4 + EDIT_IMAGE_TOKENS  # the fake's input tokens for one image sent
        # gpt-image-1 at $5 per 1M text tokens, $10 per 1M image tokens in, $40 per 1M out
        token_cost = 4 * 5_000 + EDIT_IMAGE_TOKENS * 10_000 + IMAGE_TOKENS * 40_000
        two = 4 * 5_000 + 2 * EDIT_IMAGE_TOKENS * 10_000 + IMAGE_TOKENS * 40_000
        text_priced = one * 5_000 + IMAGE_TOKENS * 40_000  # a price set without one for image tokens
        rows = await logged(h, 13 + made, EDIT)
        served = [(r["model"], r["prompt_tokens"], r["cost_nusd"], r["stream"]) for r in rows if r["status"] == 200]
        assert served == [("oa/gpt-image-1", one, token_cost, False),
                          ("gpt-image-1", one + EDIT_IMAGE_TOKENS, two, False),  # two images sent
                          ("gpt-image-1", one, token_cost, True),
                          ("dall-e-2", len(prompt) // 4, 2 * 20_000_000, False),  # the prompt's estimate
                          ("gpt-image-1", one, token_cost, False),
                          ("gpt-image-eu", one, text_priced, False),
                          *[("dall-e-2", len(prompt) // 4, 20_000_000, False)] * made]
        assert {r["error_code"] for r in rows if r["status"] != 200} >= {
            "request_too_large", "budget_exceeded", "model_not_allowed", "unsupported_endpoint", "invalid_request",
            "rate_limit_exceeded"}
        assert h.usage_totals()["app"][3] == two + 3 * token_cost + text_priced + 2 * 20_000_000
        # an image billed per image is counted as one, in its own column (not as tokens)
        assert [r["images"] for r in rows if r["status"] == 200] == [None, None, None, 2, None, None, *[1] * made]
        assert h.sql("SELECT key_name, images FROM usage_daily WHERE images > 0 ORDER BY 1") == [
            ("app", 2), ("limited", made)]


async def test_image_variations_billed_per_image_and_not_sent_to_azure(database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("oa", "openai", up.url, REF, ("dall-e-2", "dall-e-2-custom")))
        await h.admin(AddProvider("az", "azure", up.url, REF, ("dall-e-eu",), options={"api_version": "2025-04-01"}))
        secret = await h.create_key("app")
        await h.sync()
        client = client_for(h, secret)

        varied = await client.images.create_variation(image=("photo.png", PHOTO, "image/png"), n=2)
        assert varied.data is not None and [d.url for d in varied.data] == [
            "https://images.example/variation-0.png", "https://images.example/variation-1.png"]
        sent = up.last(VARIATION)
        assert sent.body["image"]["bytes"] == PHOTO and sent.body["n"] == "2" and sent.raw.count(PHOTO) == 1

        # no model in the form, and the default is routed to another name: the upstream is told it
        await h.admin(SetModelAlias("dall-e-2", (AliasTarget("oa", "dall-e-2-custom"),)))
        await h.sync()
        await client.images.create_variation(image=("photo.png", PHOTO, "image/png"))
        assert up.last(VARIATION).body["model"] == "dall-e-2-custom"
        assert up.last(VARIATION).body["image"]["bytes"] == PHOTO

        calls = len(up.requests)
        with pytest.raises(openai.BadRequestError) as kind:  # Azure OpenAI has no variations endpoint
            await client.images.create_variation(model="dall-e-eu", image=("photo.png", PHOTO))
        assert kind.value.code == "unsupported_endpoint" and "type azure" in kind.value.message
        assert len(up.requests) == calls

        await h.flush()
        rows = await logged(h, 3, VARIATION)
        assert [(r["model"], r["status"], r["cost_nusd"], r["images"]) for r in rows] == [
            ("dall-e-2", 200, 2 * 20_000_000, 2), ("dall-e-2", 200, 0, 1), ("dall-e-eu", 400, None, None)]


async def test_azure_clients_edit_and_vary_by_the_deployment_in_the_path(database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("oa", "openai", up.url, REF, ("gpt-image-1", "dall-e-2")))
        secret = await h.create_key("app")
        await h.sync()
        azure = openai.AsyncAzureOpenAI(azure_endpoint=h.base, api_key=secret, api_version="2025-04-01-preview",
                                        max_retries=0)
        edited = await azure.images.edit(model="gpt-image-1", image=("photo.png", PHOTO), prompt="a hat")
        assert edited.data is not None and up.last().path == EDIT and up.last().body["model"] == "gpt-image-1"
        stream = await azure.images.edit(model="gpt-image-1", image=("photo.png", PHOTO), prompt="a hat", stream=True)
        assert [e.type async for e in stream][-1] == "image_edit.completed"
        # to the AzureOpenAI client variations are no deployment endpoint: /openai/images/variations, model in the form
        varied = await azure.images.create_variation(model="dall-e-2", image=("photo.png", PHOTO))
        assert varied.data is not None and up.last().path == VARIATION and up.last().body["model"] == "dall-e-2"
        with pytest.raises(openai.NotFoundError):
            await azure.images.create_variation(model="no-such-model", image=("photo.png", PHOTO))
        with pytest.raises(openai.NotFoundError):
            await azure.images.edit(model="no-such-deployment", image=("photo.png", PHOTO), prompt="a hat")
        rows = await logged(h, 5, "/openai/deployments/{deployment}/images/edits")
        assert [(r["model"], r["status"], r["stream"]) for r in rows] == [
            ("gpt-image-1", 200, False), ("gpt-image-1", 200, True), ("no-such-deployment", 404, False)]
        varied_rows = await logged(h, 5, "/openai/images/variations")
        assert [(r["model"], r["status"], r["cost_nusd"]) for r in varied_rows] == [
            ("dall-e-2", 200, 20_000_000), ("no-such-model", 404, None)]
