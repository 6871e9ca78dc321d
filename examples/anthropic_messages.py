"""The Anthropic Messages API through shieldes with the official anthropic SDK. shieldes serves
POST /v1/messages and routes to any deployment serving the model (Anthropic or OpenAI-style), so
the README quickstart's gpt-4o-mini answers it as is; name a Claude model once you added one.

    SHIELDES_KEY=sk-shd-... python examples/anthropic_messages.py
    SHIELDES_KEY=sk-shd-... SHIELDES_MODEL=claude-3-5-haiku-latest python examples/anthropic_messages.py
"""

from __future__ import annotations

import sys

import anthropic
from _common import gateway, model


def main() -> int:
    url, key = gateway()
    client = anthropic.Anthropic(base_url=url, api_key=key)  # the SDK appends /v1/messages
    try:
        message = client.messages.create(
            model=model(),
            max_tokens=256,
            messages=[{"role": "user", "content": "Name three uses of an AI gateway."}],
        )
    except anthropic.APIStatusError as exc:
        print(f"error: HTTP {exc.status_code}: {exc.message}", file=sys.stderr)
        return 1
    print("".join(block.text for block in message.content if block.type == "text"))
    print(f"[{message.usage.input_tokens} input + {message.usage.output_tokens} output tokens]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
