"""Opt-in payload capture (SHIELDES_CAPTURE_BODIES=off|errors|all): which requests keep their
bodies, and how bodies are cut and redacted before they are written (in the writer, off the
request path). Bodies go to their own table, so metadata can be granted without them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from shieldes.requestlog.record import RequestRecord

MODES = ("off", "errors", "all")
REDACTED = "[redacted]"
# Credentials that may appear inside a payload: virtual keys, OpenAI/Anthropic-style keys, admin
# tokens and console sessions (a token pasted into a prompt), bearer and basic credentials, cookies
# (an HTTP request pasted whole), AWS access key ids, Google API keys, credentials in URL query
# parameters (`?key=`, Google's), and fields named like secrets, in the body's JSON and in JSON
# escaped inside its strings (a tool call's `arguments`, a document pasted into a prompt).
_SECRET_NAMES = (r"(?:[\w-]*api[_-]?key|[\w-]*secret|[\w-]*passw(?:or)?d|[\w-]*private[_-]?key"
                 r"|(?:access|refresh|id|auth|session|bearer|api|secret)[_-]?token|authorization|cookie)")
_QUERY_SECRETS = ("key", "api_key", "apikey", "access_token", "token", "password", "secret", "sig")
BUILTIN_PATTERNS = (
    r"sk-[A-Za-z0-9_\-]{16,}",
    r"shd-(?:adm|oidc)-[A-Za-z0-9_.\-]{16,}",
    r"(?i)bearer\s+[A-Za-z0-9._~+/=\-]{8,}",
    r"(?i)authorization\W{0,4}basic\s+[A-Za-z0-9+/=]{4,}",
    r"(?i)\b(?:set-)?cookie\s*:\s*[^\r\n\"'\\]+",  # to the line's (or the quoted argument's) end
    "(?i)(?:" + "|".join(rf"(?<=[?&]{name}=)" for name in _QUERY_SECRETS) + r")[^&\s\"\\#]+",
    r"AKIA[0-9A-Z]{16}",
    r"AIza[0-9A-Za-z_\-]{35}",
    # a field at the body's own level: "name": "value" (escapes inside the value kept to it)
    rf"(?i)(\"{_SECRET_NAMES}\"\s*:\s*)\"(?:[^\"\\]|\\.)*\"",
    # the same once escaped inside a string: \"name\": \"value\" (the value's own escapes doubled)
    rf"(?i)(\\\"{_SECRET_NAMES}\\\"\s*:\s*)\\\"(?:[^\\\"]|\\\\\\\"|\\\\\\\\|\\[^\\\"])*\\\"",
)


def compile_patterns(extra: Iterable[str]) -> list[re.Pattern[str]]:
    out = []
    for p in (*BUILTIN_PATTERNS, *extra):
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise ValueError(f"bad redaction pattern {p!r}: {exc}") from None
    return out


def redact(text: str, patterns: Iterable[re.Pattern[str]], secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 8 and secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in patterns:
        if pattern.groups:  # keep the field name, hide its value (quoted as the name is)
            text = pattern.sub(lambda m: m.group(1) + _quote(m.group(1)) + REDACTED + _quote(m.group(1)), text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def _quote(name: str) -> str:
    return '\\"' if name.startswith("\\") else '"'


# The admin API's and the console's bodies are never kept: they carry what is shown once (a new
# admin token, a key's secret) and values whose names say nothing (an MCP server's headers), and
# the audit log already records every change they make.
UNCAPTURED = ("/admin", "/ui")


def wants(mode: str, status: int, error_code: str | None, path: str) -> bool:
    """Whether a finished request's bodies are kept."""
    if any(path == top or path.startswith(top + "/") for top in UNCAPTURED):
        return False
    if mode == "all":
        return True
    return mode == "errors" and (status >= 400 or error_code is not None)


class Capture:
    def __init__(self, mode: str, max_bytes: int, patterns: Iterable[str] = (),
                 secrets: Callable[[], Iterable[str]] = tuple) -> None:
        if mode not in MODES:
            raise ValueError(f"capture mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.max_bytes = max_bytes
        self.patterns = compile_patterns(patterns)
        self.secrets = secrets

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def _text(self, data: bytes | None) -> tuple[str | None, bool]:
        if data is None:
            return None, False
        cut = len(data) > self.max_bytes
        text = data[: self.max_bytes].decode("utf-8", "replace").replace("\x00", "\ufffd")
        return redact(text, self.patterns, self.secrets()), cut

    def row(self, rec: RequestRecord, node_id: str) -> tuple[Any, ...] | None:
        """The bodies row of `rec`, or None when nothing was captured."""
        if rec.request_body is None and rec.response_body is None:
            return None
        request, cut_in = self._text(rec.request_body)
        response, cut_out = self._text(rec.response_body)
        started = datetime.fromtimestamp(rec.started, UTC)
        return rec.request_id, started, node_id, request, response, cut_in or cut_out
