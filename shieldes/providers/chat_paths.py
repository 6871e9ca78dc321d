"""Errors about the chat request a client's request became, told in the client's own terms.

A Messages or Responses request translated for a chat-speaking deployment becomes chat messages
that are not the client's one for one (a system prompt or `instructions` comes first, tool results
become messages of their own, a function call joins the assistant message before it). When the
provider's own translation refuses a part, or an OpenAI-compatible upstream answers a 400, the
error names `messages[i]` of that chat request: `named` rewrites each such path as the client sent
it. Pure: no I/O."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

from shieldes.errors import InvalidRequest
from shieldes.providers.base import UpstreamFailure

_CHAT_MESSAGE = re.compile(r"messages\[(\d+)\]")


def renamed(text: str, names: Sequence[str]) -> str:
    """`text` with each `messages[i]` (of the chat request) as `names[i]`, the client's path of
    what made chat message i (left as it is past the end of `names`)."""
    def client(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return names[index] if index < len(names) else match.group(0)
    return _CHAT_MESSAGE.sub(client, text)


@contextlib.contextmanager
def named(names: Sequence[str]) -> Iterator[None]:
    """Errors raised inside (a refusal of the provider's translation, an upstream's) renamed."""
    try:
        yield
    except (InvalidRequest, UpstreamFailure) as exc:
        exc.message = renamed(exc.message, names)
        exc.args = (exc.message,)
        if isinstance(exc, InvalidRequest) and exc.param:
            exc.param = renamed(exc.param, names)
        elif isinstance(exc, UpstreamFailure) and exc.param:
            # the upstream's field of the chat request: a message path is the client's item; any
            # other chat field may have another name in the client's API, so it is not named
            exc.param = renamed(exc.param, names) if _CHAT_MESSAGE.match(exc.param) else None
        raise
