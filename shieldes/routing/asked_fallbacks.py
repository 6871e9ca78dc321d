"""The fallbacks a request names for itself, as applications moved from LiteLLM and Bifrost send
them: `fallbacks` (LiteLLM: model names, or objects `{"model": ..., ...}` whose other keys are per
fallback overrides; Bifrost: `provider/model` names) and `disable_fallbacks` (LiteLLM: no
configured fallbacks for this request). Read and checked here (types, count); whether each name is
served and the key may use it is the gateway's (Gateway.with_fallbacks). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shieldes.errors import InvalidRequest

FALLBACKS, DISABLE = "fallbacks", "disable_fallbacks"
ASKED = (FALLBACKS, DISABLE)  # honoured: never forwarded, and not named in x-shieldes-dropped
MAX_FALLBACKS = 5  # each is a whole failover round (targets, retries): a bound on one request's work
MAX_NAME = 256  # as a request's `model`


@dataclass(frozen=True, slots=True)
class Asked:
    """`names`: the models or aliases to try, in order, after the requested one; `disable`: the
    configured fallbacks are off; `unused`: the keys of `{"model": ...}` entries that are not
    applied (LiteLLM's per-fallback overrides), as x-shieldes-dropped names them (`fallbacks[0].messages`)."""

    names: tuple[str, ...] = ()
    disable: bool = False
    unused: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.names) or self.disable


NOTHING_ASKED = Asked()


def _fix(what: str) -> str:
    return (f"{what}; send `fallbacks` as a list of at most {MAX_FALLBACKS} model names (or "
            "{\"model\": NAME} objects) to try in order, e.g. [\"gpt-4o-mini\"]")


def read_asked(fields: Any) -> Asked:
    """The `fallbacks` and `disable_fallbacks` of a request's top-level fields (decoded), checked:
    a wrong type, an empty name or too many entries is a 400 naming the field. A null is absent."""
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
    for i, entry in enumerate(value):
        where = f"{FALLBACKS}[{i}]"
        if isinstance(entry, dict):
            unused.extend(f"{where}.{k}" for k in entry if k != "model")
            entry = entry.get("model")
            where += ".model"
        if not isinstance(entry, str) or not entry.strip() or len(entry) > MAX_NAME or "\x00" in entry:
            raise InvalidRequest(f"{where} must be a model name (a non-empty string): "
                                 + _fix(f"got {entry!r}"[:120]), param=where)
        names.append(entry)
    return Asked(tuple(names), bool(disable), tuple(unused))
