"""Pure decisions on a chat request's `reasoning_effort` for upstreams that think within a token
budget: Anthropic Messages and Bedrock Converse (Claude's extended thinking, `budget_tokens`) and
Gemini (`thinkingConfig.thinkingBudget`). No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body
from shieldes.providers.chat_parts import Thinking, ToolCall, ToolResult, Turn
from shieldes.providers.dropped import asks_thinking

# Thinking tokens per effort. Read back by anthropic_inbound.reasoning_effort (under 4k low, under
# 16k medium, above high), so an effort crossing the gateway twice stays the same. Anthropic's
# minimum budget is 1024; Gemini 2.5 Flash takes at most 24576.
BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 24576}
OFF = "none"
_EFFORTS = (OFF, *BUDGETS)

# Claude models that cannot think (thinking came with Claude 3.7): every later model can.
_UNTHINKING_CLAUDE = re.compile(r"claude-(instant|v?2|3-(?!7)|3\.5)")
DROPPED = "reasoning_effort"
# A Messages client's own `thinking` ({"type": "enabled", "budget_tokens": N}), carried beside the
# effort it became to a Claude upstream reached through a chat translation (Bedrock), so Claude gets
# the budget asked for rather than its effort's; LiteLLM's chat clients send the same field.
BUDGET_FIELD = "thinking"
MIN_BUDGET = 1024  # Claude's least budget_tokens


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def read_effort(body: Body) -> str | None:
    """The request's `reasoning_effort` (None when not given), refused when OpenAI would refuse it."""
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in _EFFORTS:
        raise _bad(f"`reasoning_effort` must be one of {', '.join(_EFFORTS)}, not {effort!r}", "reasoning_effort")
    return str(effort)


def claude_thinks(model: str) -> bool:
    """Whether a Claude model (an Anthropic model name or a Bedrock model id) has extended thinking."""
    return "claude" in model and _UNTHINKING_CLAUDE.search(model) is None


def unsigned_continuation(turns: list[Turn]) -> bool:
    """Whether the request continues a tool call whose assistant turn does not start with its signed
    thinking block: Claude refuses such a request with thinking on (the client did not send the
    answer's `thinking_blocks` back)."""
    if len(turns) < 2 or turns[-1].role != "user" or turns[-2].role != "assistant":
        return False
    if not any(isinstance(p, ToolResult) for p in turns[-1].parts):
        return False
    assistant = turns[-2].parts
    return any(isinstance(p, ToolCall) for p in assistant) and not isinstance(assistant[0], Thinking)


@dataclass(frozen=True, slots=True)
class ClaudeThinking:
    """What a chat request becomes for Claude: its thinking budget (None: thinking off), its
    `max_tokens`, and why an effort the client asked for is not carried (named in
    x-shieldes-dropped), if it is not."""

    budget: int | None
    max_tokens: int
    dropped: bool = False


def claude_thinking(body: Body, turns: list[Turn], model: str, max_tokens: int | None,
                    default_max: int, *, forced_tool: bool = False) -> ClaudeThinking:
    """`reasoning_effort` as Claude's extended thinking. Thinking is carried with the effort's
    budget (the request's own `thinking.budget_tokens` when it has one: asked_budget; a `thinking`
    without `reasoning_effort`, as LiteLLM's chat clients send it, is honoured alone); its tokens
    count within `max_tokens` as they count within OpenAI's max_completion_tokens, and the budget
    comes on top of a client's max it would not fit under (Claude needs budget < max_tokens).
    Claude thinks only at temperature 1 and top_p >= 0.95: other values are refused (as OpenAI
    refuses them for its reasoning models). Thinking is left off (the
    effort named as dropped) for a model that cannot think, for a forced tool choice (Claude refuses
    both at once; `forced_tool`: the translation forces one itself) and for a tool call continued
    without the turn's thinking_blocks."""
    effort = read_effort(body)
    given = max_tokens
    asked = "reasoning_effort"
    if effort is None and asks_thinking(body):  # LiteLLM's `thinking` alone: its budget, as asked
        effort, asked = "medium", "thinking"  # (its budget_tokens decides the budget: checked below)
    if effort is None or effort == OFF:
        return ClaudeThinking(None, given or default_max)
    choice = body.get("tool_choice")
    forced = forced_tool or (bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict)))
    if not claude_thinks(model) or forced or unsigned_continuation(turns):
        return ClaudeThinking(None, given or default_max, dropped=True)
    if asked == "thinking":
        _check_budget(body)
    temperature, top_p = body.get("temperature"), body.get("top_p")
    if temperature is not None and temperature != 1:
        raise _bad(f"`temperature` {temperature!r} does not go with `{asked}` on {model}: Claude thinks "
                   f"only at temperature 1; leave temperature out (or send 1), or {_OFF[asked]}", "temperature")
    if isinstance(top_p, int | float) and not isinstance(top_p, bool) and top_p < 0.95:
        raise _bad(f"`top_p` {top_p!r} does not go with `{asked}` on {model}: Claude thinks only with "
                   f"top_p from 0.95 to 1; leave top_p out, or {_OFF[asked]}", "top_p")
    budget = asked_budget(body) or BUDGETS[effort]
    if given is None:
        return ClaudeThinking(budget, budget + default_max)
    return ClaudeThinking(budget, given if given > budget else given + budget)


_OFF = {"reasoning_effort": 'send reasoning_effort "none"', "thinking": "leave thinking out"}


def _check_budget(body: Body) -> None:
    """A `thinking` asked for alone (asks_thinking) needs a budget_tokens Claude takes (asked_budget)."""
    if asked_budget(body) is None:
        raise _bad(f"`thinking.budget_tokens` must be a whole number of at least {MIN_BUDGET} (Claude's least "
                   'thinking budget); send e.g. {"type": "enabled", "budget_tokens": 2048}, or leave thinking out',
                   "thinking.budget_tokens")


def asked_budget(body: Body) -> int | None:
    """The `budget_tokens` of the request's own `thinking` (BUDGET_FIELD), when Claude would take it."""
    thinking = body.get(BUDGET_FIELD)
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(budget, int) and not isinstance(budget, bool) and budget >= MIN_BUDGET:
        return budget
    return None


def claude_thinking_field(plan: ClaudeThinking) -> Body | None:
    """The `thinking` request field (Anthropic's, and Bedrock's additionalModelRequestFields')."""
    return None if plan.budget is None else {"type": "enabled", "budget_tokens": plan.budget}


def gemini_thinking(body: Body, model: str) -> Body | None:
    """`reasoning_effort` as Gemini's thinkingConfig: the effort's budget with the thoughts returned
    (as `reasoning_content`); `none` is a budget of 0, or the least budget (128) on the Pro models,
    which cannot stop thinking and refuse 0."""
    effort = read_effort(body)
    if effort is None:
        return None
    if effort == OFF:
        return {"thinkingBudget": 128 if "-pro" in model else 0}
    return {"thinkingBudget": BUDGETS[effort], "includeThoughts": True}


def visible(parts: list[Any], thinking: bool) -> list[Any]:
    """A turn's parts as sent: Thinking parts only when the request thinks (they are the model's
    own signed blocks, which a request without thinking has no use for)."""
    return parts if thinking else [p for p in parts if not isinstance(p, Thinking)]
