"""Tool call arguments as the OpenAI chat format has them: a JSON text. Some OpenAI-compatible
servers (Ollama, some vLLM builds) send `function.arguments` as a JSON object instead, in answers
and in stream deltas, and some clients send objects back in their history; OpenAI itself refuses
anything but a string there. These helpers turn such objects into their JSON text. Pure."""

from __future__ import annotations

import re
from typing import Any

import orjson

from shieldes.providers.tool_ids import ANY, TEXT_OR_NONE, changed_items, chat_history_fits

Body = dict[str, Any]
# A quick look at an upstream's bytes: arguments given as an object or list (rare; parse then)
OBJECT_ARGUMENTS = re.compile(rb'"arguments"\s*:\s*[{\[]')


def arguments_text(value: Any) -> str:
    """`function.arguments` as JSON text: a string as it is, an object (or any JSON value but
    null) encoded, null as the empty string."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def arguments_object(arguments: Any) -> Body:
    """`function.arguments` as the object Anthropic's tool input and Gemini's call args always are:
    an object as it is (Ollama sends them so), JSON text parsed; malformed model output stays
    visible under `_raw_arguments` instead of being lost."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": arguments}


def _string_call(call: Any) -> Any:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or "arguments" not in fn or isinstance(fn["arguments"], TEXT_OR_NONE):
        return call
    return dict(call, function=dict(fn, arguments=arguments_text(fn["arguments"])))


def string_arguments(body: Body) -> Body:
    """A chat request whose history's tool call arguments are all strings: the very same object
    when they already are, else a copy with the objects encoded."""
    messages = body.get("messages")
    if not isinstance(messages, list) or chat_history_fits(messages, ANY, text_arguments=True):
        return body

    def fix(msg: Any) -> Any:
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        fixed = changed_items(calls, _string_call) if isinstance(calls, list) else None
        return msg if fixed is None else dict(msg, tool_calls=fixed)

    out = changed_items(messages, fix)
    return body if out is None else dict(body, messages=out)


def string_answer_arguments(answer: Body) -> bool:
    """Encode, in place, object arguments in a chat completion's messages or a chunk's deltas;
    whether any were found."""
    changed = False
    choices = answer.get("choices")
    for choice in choices if isinstance(choices, list) else []:
        if not isinstance(choice, dict):
            continue
        for key in ("message", "delta"):
            part = choice.get(key)
            calls = part.get("tool_calls") if isinstance(part, dict) else None
            for call in calls if isinstance(calls, list) else []:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and not isinstance(fn.get("arguments"), str | None):
                    fn["arguments"] = arguments_text(fn["arguments"])
                    changed = True
    return changed
