"""Tool calling through shieldes with the official openai SDK: the model asks for a function, the
script runs it and sends the result back for the final answer.

    SHIELDES_KEY=sk-shd-... python examples/openai_tools.py
"""

from __future__ import annotations

import json
import sys
from typing import Any

import openai
from _common import gateway, model

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "temperature_c": 18, "sky": "clear"}  # a stand-in for a real lookup


def main() -> int:
    url, key = gateway()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Lisbon?"}]
    try:
        first = client.chat.completions.create(model=model(), messages=messages, tools=TOOLS)
        message = first.choices[0].message
        if not message.tool_calls:
            print(message.content)
            return 0
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            args = json.loads(call.function.arguments or "{}")
            print(f"[tool call] {call.function.name}({args})")
            result = get_weather(**args)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
        final = client.chat.completions.create(model=model(), messages=messages, tools=TOOLS)
    except openai.APIStatusError as exc:
        print(f"error: HTTP {exc.status_code} {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    print(final.choices[0].message.content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
