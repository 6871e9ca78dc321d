"""What a config command's decision reads (shieldes/events/scope.py selects those events): a
writer that folds only them decides exactly as one folding the whole config stream
(tests/unit/test_scope.py), so `key create` and `key revoke` cost the same at a million keys as
at ten."""

from __future__ import annotations

from shieldes.events.scope import Scope
from shieldes.projections.commands import Command, CreateKey, RevokeKey


def scope_of(command: Command) -> Scope | None:
    """The entities a command looks up, for commands whose decision and printed result read only
    those and the shared config; None: it needs the whole config."""
    match command:
        case CreateKey():
            return Scope(keys=(command.name, command.id), hashes=(command.key_hash,),
                         teams=(command.team,) if command.team else ())
        case RevokeKey():
            return Scope(keys=(command.key,))
    return None
