"""The fallbacks a request names for itself, as applications moved from LiteLLM and Bifrost send
them: `fallbacks` (LiteLLM: model names, or objects `{"model": ..., ...}` whose other keys are per
fallback overrides; Bifrost: `provider/model` names) and `disable_fallbacks` (LiteLLM: no
configured fallbacks for this request). Read and checked here (types, count); whether each name is
served and the key may use it is the gateway's (Gateway.with_fallbacks). Of the overrides, the
fallback's sampling and output settings (APPLIED) are applied to its attempts on the chat and
completions routes (another model may need its own temperature or output limit); every other key
(`messages`, `api_key`, `api_base`, ...), and all of them on the other routes, is not applied and is
named in x-shieldes-dropped. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body

FALLBACKS, DISABLE = "fallbacks", "disable_fallbacks"
ASKED = (FALLBACKS, DISABLE)  # honoured: never forwarded, and not named in x-shieldes-dropped
MAX_FALLBACKS = 5  # each is a whole failover round (targets, retries): a bound on one request's work
MAX_NAME = 256  # as a request's `model`
# the per-fallback overrides applied (on chat and completions): settings of the call that change
# neither whom it reaches nor what it is billed beyond the request's own bound (output limits are
# held to a budget's: fallback_fields)
APPLIED = frozenset({"temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "presence_penalty",
                     "frequency_penalty", "seed", "stop", "reasoning_effort"})
LIMITS = ("max_completion_tokens", "max_tokens")


@dataclass(frozen=True, slots=True)
class Asked:
    """`names`: the models or aliases to try, in order, after the requested one; `disable`: the
    configured fallbacks are off; `unused`: the keys of `{"model": ...}` entries that are not
    applied (LiteLLM's per-fallback overrides), as x-shieldes-dropped names them (`fallbacks[0].messages`);
    `overrides`: those applied, (entry index, name, its (key, value) pairs) per entry that has any."""

    names: tuple[str, ...] = ()
    disable: bool = False
    unused: tuple[str, ...] = ()
    overrides: tuple[tuple[int, str, tuple[tuple[str, Any], ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.names) or self.disable


NOTHING_ASKED = Asked()


def _fix(what: str) -> str:
    return (f"{what}; send `fallbacks` as a list of at most {MAX_FALLBACKS} model names (or "
            "{\"model\": NAME} objects) to try in order, e.g. [\"gpt-4o-mini\"]")


def read_asked(fields: Any, *, apply: bool = False) -> Asked:
    """The `fallbacks` and `disable_fallbacks` of a request's top-level fields (decoded), checked:
    a wrong type, an empty name or too many entries is a 400 naming the field. A null is absent.
    `apply`: the route applies the overrides of APPLIED (chat, completions); else each is unused."""
    if not isinstance(fields, dict) or (FALLBACKS not in fields and DISABLE not in fields):
        return NOTHING_ASKED
    disable = fields.get(DISABLE)
    if disable is not None and not isinstance(disable, bool):
        raise InvalidRequest("field 'disable_fallbacks' has the wrong type: send true or false",
                             param=DISABLE)
    value = fields.get(FALLBACKS)
    if value is None:
        return Asked((), bool(disable))
    if not isinstance(value, list):
        raise InvalidRequest("field 'fallbacks' has the wrong type: " + _fix(f"got {type(value).__name__}"),
                             param=FALLBACKS)
    if len(value) > MAX_FALLBACKS:
        raise InvalidRequest(f"field 'fallbacks' has {len(value)} entries: " + _fix("too many"), param=FALLBACKS)
    names: list[str] = []
    unused: list[str] = []
    overrides: list[tuple[int, str, tuple[tuple[str, Any], ...]]] = []
    for i, entry in enumerate(value):
        where = f"{FALLBACKS}[{i}]"
        if isinstance(entry, dict):
            unused.extend(f"{where}.{k}" for k in entry if k != "model" and not (apply and k in APPLIED))
            pairs = tuple((k, v) for k, v in entry.items() if apply and k in APPLIED and v is not None)
            if pairs and isinstance(entry.get("model"), str):
                overrides.append((i, entry["model"], pairs))
            entry = entry.get("model")
            where += ".model"
        if not isinstance(entry, str) or not entry.strip() or len(entry) > MAX_NAME or "\x00" in entry:
            raise InvalidRequest(f"{where} must be a model name (a non-empty string): "
                                 + _fix(f"got {entry!r}"[:120]), param=where)
        names.append(entry)
    return Asked(tuple(names), bool(disable), tuple(unused), tuple(overrides))


def fallback_fields(asked: Asked, body: Body, cap: int | None) -> tuple[dict[str, Body], tuple[str, ...]]:
    """(per fallback name, the top-level fields its attempts send over the request's `body`; the
    x-shieldes-dropped names of the overrides not applied). An output limit goes in the field the
    request bounds its output with (OpenAI refuses both at once), and under a budget's bound `cap`
    (the gateway's, or the request's own limit) only at or below it (a budget reserves for that
    bound: a fallback never spends past it)."""
    out: dict[str, Body] = {}
    unused: list[str] = []
    limit = next((f for f in LIMITS if body.get(f) is not None), None)
    for i, name, pairs in asked.overrides:
        fields: Body = {}
        for key, value in pairs:
            if key in LIMITS:
                if cap is not None and not (isinstance(value, int) and not isinstance(value, bool) and value <= cap):
                    unused.append(f"{FALLBACKS}[{i}].{key}")
                    continue
                key = limit or key
            fields[key] = value
        if fields and name not in out:  # (a name listed twice: its first entry's)
            out[name] = fields
    return out, tuple(unused)
