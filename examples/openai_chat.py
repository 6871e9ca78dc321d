"""A chat completion through shieldes with the official openai SDK.

    SHIELDES_KEY=sk-shd-... python examples/openai_chat.py
"""

from __future__ import annotations

import sys

import openai
from _common import gateway, model


def main() -> int:
    url, key = gateway()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key)
    try:
        response = client.chat.completions.create(
            model=model(),
            messages=[
                {"role": "system", "content": "You answer in one sentence."},
                {"role": "user", "content": "What does an AI gateway do?"},
            ],
        )
    except openai.APIStatusError as exc:  # shieldes errors use the OpenAI shape: code and message
        print(f"error: HTTP {exc.status_code} {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    print(response.choices[0].message.content)
    if response.usage:
        print(f"[{response.model}: {response.usage.prompt_tokens} prompt + "
              f"{response.usage.completion_tokens} completion tokens]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
