"""A streamed chat completion (server-sent events) through shieldes with the official openai SDK.

    SHIELDES_KEY=sk-shd-... python examples/openai_stream.py
"""

from __future__ import annotations

import sys

import openai
from _common import gateway, model


def main() -> int:
    url, key = gateway()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key)
    try:
        stream = client.chat.completions.create(
            model=model(),
            messages=[{"role": "user", "content": "Count from one to five."}],
            stream=True,
            stream_options={"include_usage": True},  # the last chunk carries token counts
        )
        usage = None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
            if chunk.usage:
                usage = chunk.usage
    except openai.APIStatusError as exc:
        print(f"error: HTTP {exc.status_code} {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    print()
    if usage:
        print(f"[{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
