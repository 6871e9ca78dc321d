"""The byte count admission holds a request to: every byte, base64 media at most MEDIA_BYTES."""

from __future__ import annotations

import base64

import orjson
from hypothesis import given
from hypothesis import strategies as st

from shieldes.usage.tokens import MEDIA_BYTES, prompt_bytes

IMAGE = base64.b64encode(bytes(range(256)) * 100).decode()  # 34,136 characters of base64


def test_media_counts_as_one_image_wherever_a_client_puts_it() -> None:
    for part in ({"type": "image_url", "image_url": {"url": "data:image/png;base64," + IMAGE}},  # chat
                 {"type": "input_image", "image_url": "data:image/jpeg;base64," + IMAGE},  # Responses
                 {"type": "input_file", "file_data": "data:application/pdf;base64," + IMAGE},
                 {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE}}):
        one = orjson.dumps({"messages": [{"content": [part]}]})
        assert prompt_bytes(one) == len(one) - len(IMAGE) + MEDIA_BYTES
        # two of them, written by an encoder that escapes slashes (`\/`, as PHP's does)
        two = orjson.dumps({"messages": [{"content": [part, part]}]}).replace(b"/", b"\\/")
        run = len(IMAGE.replace("/", "\\/"))
        assert prompt_bytes(two) == len(two) - 2 * (run - MEDIA_BYTES)


def test_one_image_counts_exactly_media_bytes() -> None:
    raw = orjson.dumps({"messages": [{"content": [{"type": "image_url",
                                                   "image_url": {"url": "data:image/png;base64," + IMAGE}}]}]})
    assert prompt_bytes(raw) == len(raw) - len(IMAGE) + MEDIA_BYTES


def test_short_runs_and_text_keep_every_byte() -> None:
    small = base64.b64encode(b"x" * 300).decode()  # a 400-character thumbnail: fewer bytes than an image's worth
    for body in ({"messages": [{"content": "encode it in base64 please"}]},
                 {"messages": [{"content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," +
                                                                                small}}]}]},
                 {"tool": {"data": "base64 " * 2000}}):  # a `data` field of text: runs end at each space
        raw = orjson.dumps(body)
        assert prompt_bytes(raw) == len(raw)


@given(st.text(max_size=300), st.binary(max_size=20_000))
def test_never_more_than_the_body(text: str, blob: bytes) -> None:
    raw = orjson.dumps({"text": text, "source": {"type": "base64", "data": base64.b64encode(blob).decode()}})
    assert 0 < prompt_bytes(raw) <= len(raw)
