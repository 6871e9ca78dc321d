"""Files and images as coding agents and apps send them, through the official SDKs, to the
deployments that read them in their own words (Anthropic, Bedrock, Gemini): PDFs (the openai SDK's
`file` part, the anthropic SDK's base64 `document` block), which were refused with "content part
type 'file' is not supported here", and images in tool results (a browser tool's screenshot), which
were refused (chat) or left out (Messages, Responses)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock, aws_credentials
from tests.fake_google import FakeGoogle
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Harness, harness

CLAUDE_ON_BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PDF = base64.b64encode(b"%PDF-1.4\n% a small report\n%%EOF\n").decode()
GEMINI_KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"


@pytest.fixture
def aws_env() -> Iterator[None]:
    with aws_credentials():
        yield


Fakes = tuple[Harness, FakeUpstream, FakeBedrock, FakeGoogle]


@pytest.fixture
async def node(database_url: str, aws_env: None) -> AsyncIterator[Fakes]:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with FakeBedrock(region="eu-west-1") as bedrock, FakeGoogle() as google, \
            harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        os.environ[GEMINI_KEY_ENV] = google.api_key
        await h.admin(AddProvider("claude", "anthropic", up.url, "env:" + UPSTREAM_KEY_ENV, ("claude-sonnet-4-5",)))
        await h.admin(AddProvider("openai", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-4o",)))
        await h.admin(AddProvider("br", "bedrock", bedrock.url, None, (CLAUDE_ON_BEDROCK,),
                                  options={"region": "eu-west-1"}))
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:" + GEMINI_KEY_ENV,
                                  ("gemini-2.5-flash",)))
        yield h, up, bedrock, google


async def test_a_pdf_reaches_claude_bedrock_and_gemini_from_either_sdk(node: Fakes) -> None:
    h, up, bedrock, google = node
    secret = await h.create_key("app")
    await h.sync()
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
    ask: Any = [{"role": "user", "content": [
        {"type": "file", "file": {"filename": "Q3 report (final).pdf",
                                  "file_data": f"data:application/pdf;base64,{PDF}"}},
        {"type": "text", "text": "summarise this"}]}]

    chat = await client.chat.completions.create(model="claude-sonnet-4-5", messages=ask)
    assert chat.choices[0].message.content
    assert up.last("/v1/messages").body["messages"][0]["content"][0] == {
        "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "title": "Q3 report (final).pdf"}

    chat = await client.chat.completions.create(model=CLAUDE_ON_BEDROCK, messages=ask)
    assert chat.choices[0].message.content
    assert bedrock.last().body["messages"][0]["content"][0] == {
        "document": {"format": "pdf", "name": "Q3 report (final)", "source": {"bytes": PDF}}}

    stream = await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert google.last().body["contents"][0]["parts"][0] == {"inlineData": {"mimeType": "application/pdf",
                                                                            "data": PDF}}

    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
    document: Any = {"type": "document", "title": "notes", "source": {"type": "base64", "media_type": "application/pdf",
                                                                       "data": PDF}}
    for model in (CLAUDE_ON_BEDROCK, "gemini-2.5-flash"):
        answer = await claude.messages.create(model=model, max_tokens=100, messages=[
            {"role": "user", "content": [document, {"type": "text", "text": "summarise this"}]}])
        assert answer.content[0].type == "text" and answer.content[0].text
    assert bedrock.last().body["messages"][0]["content"][0]["document"]["name"] == "notes"
    assert google.last().body["contents"][0]["parts"][0]["inlineData"]["data"] == PDF

    uploaded: Any = [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc123"}}]}]
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model=CLAUDE_ON_BEDROCK, messages=uploaded)
    assert "`file_id` names a file uploaded to OpenAI's Files API" in err.value.message
    sheet: Any = [{"role": "user", "content": [{"type": "file", "file": {
        "filename": "a.csv", "file_data": "data:text/csv;base64,YSxiCg=="}}]}]
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="gemini-2.5-flash", messages=sheet)
    assert "takes PDF files only (file_data of type application/pdf, not text/csv)" in err.value.message
    await client.close()
    await claude.close()


PNG = "iVBORw0KGgo="


async def test_images_in_tool_results_reach_claude_bedrock_and_gemini_from_every_client_api(node: Fakes) -> None:
    h, up, bedrock, google = node
    secret = await h.create_key("app")
    await h.sync()
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
    shot: Any = [{"role": "user", "content": "open the page"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "call_1", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": "call_1", "content": [
                     {"type": "text", "text": "the page:"},
                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]
    tools: Any = [{"type": "function", "function": {"name": "screenshot", "parameters": {"type": "object"}}}]
    for model in ("claude-sonnet-4-5", CLAUDE_ON_BEDROCK, "gemini-2.5-flash"):
        chat = await client.chat.completions.create(model=model, messages=shot, tools=tools)
        assert chat.choices[0].message.content, model
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert up.last("/v1/messages").body["messages"][-1]["content"] == [{
        "type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "the page:"}, image]}]
    converse = {"toolResult": {"toolUseId": "call_1", "status": "success", "content": [
        {"text": "the page:"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]}}
    assert bedrock.last().body["messages"][-1]["content"] == [converse]
    assert google.last().body["contents"][-1]["parts"] == [
        {"functionResponse": {"name": "screenshot", "response": {"content": "the page:"}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}}]

    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
    history: Any = [{"role": "user", "content": "open the page"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "screenshot",
                                                       "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                        {"type": "text", "text": "the page:"}, image]}]}]
    for model in (CLAUDE_ON_BEDROCK, "gemini-2.5-flash"):
        raw = await claude.messages.with_raw_response.create(model=model, max_tokens=100, messages=history, tools=[
            {"name": "screenshot", "input_schema": {"type": "object"}}])
        assert "x-shieldes-dropped" not in raw.headers, model
    assert bedrock.last().body["messages"][-1]["content"][0]["toolResult"]["content"][1] == converse[
        "toolResult"]["content"][1]
    assert google.last().body["contents"][-1]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    raw = await claude.messages.with_raw_response.create(model="gpt-4o", max_tokens=100, messages=history, tools=[
        {"name": "screenshot", "input_schema": {"type": "object"}}])
    assert raw.headers["x-shieldes-dropped"] == "messages[2].content[0].content image block"  # OpenAI takes none

    answer = await client.responses.create(model=CLAUDE_ON_BEDROCK, tools=[
        {"type": "function", "name": "screenshot", "parameters": {"type": "object"}}], input=[
        {"role": "user", "content": "open the page"},
        {"type": "function_call", "call_id": "call_9", "name": "screenshot", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_9", "output": [
            {"type": "input_text", "text": "the page:"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]}])
    assert answer.output_text
    assert bedrock.last().body["messages"][-1]["content"] == [
        {"toolResult": {**converse["toolResult"], "toolUseId": "call_9"}}]
    await client.close()
    await claude.close()


async def test_two_screenshots_and_two_unnamed_pdfs_stay_apart(node: Fakes) -> None:
    """Gemini wants a turn's functionResponse parts together (one per call): the images of two tool
    results went between them; Converse tells documents apart by name: two PDFs without a file
    name were both `document`."""
    h, _up, bedrock, google = node
    secret = await h.create_key("app")
    await h.sync()
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
    calls: Any = [{"id": f"call_{i}", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}
                  for i in (1, 2)]
    image: Any = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    shots: Any = [{"role": "tool", "tool_call_id": f"call_{i}",
                   "content": [{"type": "text", "text": f"page {i}"}, image]} for i in (1, 2)]
    await client.chat.completions.create(model="gemini-2.5-flash", messages=[
        {"role": "user", "content": "open both pages"}, {"role": "assistant", "content": None, "tool_calls": calls},
        *shots])
    parts = google.last().body["contents"][-1]["parts"]
    assert [next(iter(p)) for p in parts] == ["functionResponse", "functionResponse", "inlineData", "inlineData"]

    pdf: Any = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}"}}
    await client.chat.completions.create(model=CLAUDE_ON_BEDROCK, messages=[
        {"role": "user", "content": [pdf, pdf, {"type": "text", "text": "compare them"}]}])
    names = [b["document"]["name"] for b in bedrock.last().body["messages"][0]["content"] if "document" in b]
    assert names == ["document", "document (2)"]
    await client.close()
