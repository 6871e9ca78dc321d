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
# tokens and console sessions (a token pasted into a prompt), bearer tokens, AWS access key ids,
# Google API keys, and JSON fields named like secrets.
BUILTIN_PATTERNS = (
    r"sk-[A-Za-z0-9_\-]{16,}",
    r"shd-(?:adm|oidc)-[A-Za-z0-9_.\-]{16,}",
    r"(?i)bearer\s+[A-Za-z0-9._~+/=\-]{8,}",
    r"AKIA[0-9A-Z]{16}",
    r"AIza[0-9A-Za-z_\-]{35}",
    r"(?i)(\"(?:api[_-]?key|authorization|x-api-key|password|secret|access[_-]?token)\"\s*:\s*)\"[^\"]*\"",
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
        if pattern.groups:  # keep the field name, hide its value
            text = pattern.sub(lambda m: m.group(1) + '"' + REDACTED + '"', text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


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
