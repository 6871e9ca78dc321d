"""The byte count admission holds a request to: every byte, base64 media at most MEDIA_BYTES."""

from __future__ import annotations

import base64

import orjson
from hypothesis import given
from hypothesis import strategies as st

from shieldes.usage.tokens import MEDIA_BYTES, prompt_bytes

IMAGE = base64.b64encode(bytes(range(256)) * 100).decode()  # 34,136 characters of base64
PDF = "data:application/pdf;base64," + IMAGE
PARTS = (  # (the JSON string holding the media, the content part a client sends it in)
    ("data:image/png;base64," + IMAGE, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + IMAGE}}),
    ("data:image/jpeg;base64," + IMAGE, {"type": "input_image", "image_url": "data:image/jpeg;base64," + IMAGE}),
    (PDF, {"type": "input_file", "file_data": PDF}),
    (IMAGE, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE}}),
)


def test_media_counts_as_one_image_wherever_a_client_puts_it() -> None:
    for media, part in PARTS:
        one = orjson.dumps({"messages": [{"content": [{"type": "text", "text": "what is on it?"}, part]}]})
        assert prompt_bytes(one) == len(one) - len(media) + MEDIA_BYTES
        # two, from an encoder that escapes slashes (as PHP's does) and puts spaces after colons
        two = orjson.dumps({"messages": [{"content": [part, part]}]}).replace(b"/", b"\\/").replace(b'":', b'": ')
        assert prompt_bytes(two) == len(two) - 2 * (len(media.replace("/", "\\/")) - MEDIA_BYTES)


def test_text_keeps_every_byte() -> None:
    small = base64.b64encode(b"x" * 300).decode()  # a thumbnail: fewer bytes than an image's worth
    for body in ({"messages": [{"content": "encode it in base64 please"}]},
                 {"messages": [{"content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," +
                                                                                small}}]}]},
                 {"tool": {"data": "base64 " * 2000}},  # a `data` field of text
                 {"tool": {"data": "\u4e2d\u6587" * 2000}},  # text an encoder writes as \u escapes, no space
                 {"messages": [{"content": "AAAA" * 4000}]},  # base64 pasted as text costs its tokens
                 {"blob": "x" * 20000, "data": "y-" * 10000}):
        for raw in (orjson.dumps(body), orjson.dumps(body).replace(b"\xe4\xb8\xad\xe6\x96\x87", b"\\u4e2d\\u6587")):
            assert prompt_bytes(raw) == len(raw)


@given(st.text(max_size=300), st.binary(max_size=20_000), st.integers(0, 2))
def test_never_more_than_the_body_and_media_past_an_image_always_found(text: str, blob: bytes, where: int) -> None:
    data = base64.b64encode(blob).decode()
    part = [{"source": {"type": "base64", "data": data}}, {"image_url": {"url": "data:image/webp;base64," + data}},
            {"text": data}][where]
    raw = orjson.dumps({"text": text, "content": [part]})
    got = prompt_bytes(raw)
    assert 0 < got <= len(raw)
    media = len(data) + (len("data:image/webp;base64,") if where == 1 else 0)
    if where < 2 and media > MEDIA_BYTES:
        assert got == len(raw) - media + MEDIA_BYTES
    elif where == 2:
        assert got == len(raw)
