"""Responses `custom` (freeform) tools for upstreams that only speak chat completions: a custom
tool is offered as a function tool taking one string, `input` (its format, a grammar or free
text, said in that parameter's description so the model knows the syntax); the model's call of
that function is the custom tool's call, its `input` the string argument. InputStream reads that
string out of the arguments as they stream, so the input streams as it is written. Pure."""

from __future__ import annotations

import json
import re
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body

INPUT = "input"  # the one parameter of the function a custom tool becomes

# The arguments of a well-formed call, up to the opening quote of the input string's value
_OPENING = re.compile(r'\s*\{\s*"input"\s*:\s*"')
# The part of a JSON string's body that decodes alone: whole escapes only (a \u escape of a high
# surrogate with its low half), so a cut there never splits one across stream deltas
_WHOLE = re.compile(r'(?:[^"\\]+|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[0-9a-fA-F]{4}'
                    r'|\\u(?![dD][89abAB])[0-9a-fA-F]{4}|\\[^u])*')
# Models write raw newlines inside strings at times; the input is text, take them as they are
_LENIENT = json.JSONDecoder(strict=False)


def _format_text(fmt: Any, where: str) -> str:
    """What the `input` parameter's description says about the text the tool takes."""
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return "free text, the tool's whole input"
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        if fmt.get("syntax") == "regex":
            return f"text matching this regular expression: {fmt['definition']}"
        return f"text following this {fmt.get('syntax') or 'lark'} grammar:\n{fmt['definition']}"
    raise InvalidRequest(f"{where}.format must be {{\"type\": \"text\"}} or {{\"type\": \"grammar\", "
                         "\"syntax\": \"lark\" | \"regex\", \"definition\": ...}", param=f"{where}.format")


def custom_function(tool: Body, where: str) -> Body:
    """A custom tool as the chat function tool that stands for it (its description kept)."""
    if not isinstance(tool.get("name"), str):
        raise InvalidRequest(f"{where} needs a `name`", param=f"{where}.name")
    parameters = {"type": "object", "required": [INPUT], "properties": {
        INPUT: {"type": "string", "description": _format_text(tool.get("format"), where)}}}
    fn: Body = {"name": tool["name"], "parameters": parameters}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def custom_arguments(text: Any) -> str:
    """A custom tool call's input as the arguments of the function call that stands for it."""
    return json.dumps({INPUT: text if isinstance(text, str) else ""}, ensure_ascii=False)


def custom_input(arguments: str) -> str:
    """The input of a custom tool call from the function call's arguments: the `input` string of
    the JSON object they should be, else (a model that wrote the text itself, arguments cut short)
    the arguments' text as it is."""
    try:
        value = _LENIENT.decode(arguments)
    except ValueError:
        return arguments
    return value[INPUT] if isinstance(value, dict) and isinstance(value.get(INPUT), str) else arguments


class InputStream:
    """The input of a custom tool call as its arguments stream: `feed(delta)` gives the input text
    the new argument text completes (the `input` string decoded up to its last whole escape), ""
    while none is; `rest(arguments)` at the end gives what custom_input has beyond what was given.
    Arguments not of the form {"input": "..."} give nothing until `rest`."""

    def __init__(self) -> None:
        self._text = ""  # the arguments not decoded yet (from the start until the opening is seen)
        self._at: int | None = None  # index into _text of the first input character not decoded
        self._closed = False  # the input string ended (or the arguments are of another form)
        self._given: list[str] = []

    def feed(self, delta: str) -> str:
        if self._closed:
            return ""
        self._text += delta
        if self._at is None:
            opening = _OPENING.match(self._text)
            if opening is None:
                # (a prefix of the opening may still grow into it)
                self._closed = not _could_open(self._text)
                return ""
            self._at = opening.end()
        whole = _WHOLE.match(self._text, self._at)
        end = whole.end() if whole is not None else self._at
        if end == self._at:
            self._closed = end < len(self._text) and self._text[end] == '"'
            return ""
        piece: str = _LENIENT.decode(f'"{self._text[self._at:end]}"')
        self._closed = end < len(self._text) and self._text[end] == '"'
        # the decoded part is never read again: keep only what follows it
        self._text, self._at = self._text[end:], 0
        self._given.append(piece)
        return piece

    def rest(self, arguments: str) -> str:
        """The input's text beyond what feed gave. Arguments that turned out not to hold it
        (cut short, not JSON) are the input themselves; what was given then stays given."""
        given = "".join(self._given)
        final = custom_input(arguments)
        return final[len(given):] if final.startswith(given) else ""


def _could_open(text: str) -> bool:
    """Whether `text` is a beginning of `{"input": "` (with any whitespace)."""
    squeezed = re.sub(r"\s+", "", text)
    return '{"input":"'.startswith(squeezed)
