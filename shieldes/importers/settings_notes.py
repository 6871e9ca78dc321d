"""What a LiteLLM or Bifrost file sets beyond providers, models and prices, as the note that says
what to do in shieldes instead (pure). Timeouts, retries and the circuit breaker are node settings
in shieldes (SHIELDES_* environment variables, one value per node for every provider), so the note
gives the variable and the file's value; what has no equivalent is named, so that nothing a file
says is dropped unseen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# A file's setting -> (shieldes variable, factor from the file's unit to the variable's, what it is)
NODE_SETTINGS: Mapping[str, tuple[str, float, str]] = {
    "timeout": ("SHIELDES_UPSTREAM_TIMEOUT", 1.0, "seconds an upstream call may take"),
    "request_timeout": ("SHIELDES_UPSTREAM_TIMEOUT", 1.0, "seconds an upstream call may take"),
    "stream_timeout": ("SHIELDES_UPSTREAM_TIMEOUT", 1.0, "seconds of silence a stream may have"),
    "default_request_timeout_in_seconds": ("SHIELDES_UPSTREAM_TIMEOUT", 1.0, "seconds an upstream call may take"),
    "num_retries": ("SHIELDES_UPSTREAM_RETRIES", 1.0, "extra attempts, across deployments"),
    "max_retries": ("SHIELDES_UPSTREAM_RETRIES", 1.0, "extra attempts, across deployments"),
    "retry_backoff_initial_ms": ("SHIELDES_RETRY_BACKOFF", 0.001, "seconds before retrying"),
    "allowed_fails": ("SHIELDES_BREAKER_FAILURES", 1.0, "failures that rest a deployment"),
    "cooldown_time": ("SHIELDES_BREAKER_COOLDOWN", 1.0, "seconds a failing deployment rests"),
}

# LiteLLM routing_strategy -> shieldes strategy (docs/routing.md#strategies)
LITELLM_STRATEGIES: Mapping[str, str] = {
    "simple-shuffle": "weighted",
    "latency-based-routing": "least-latency",
    "cost-based-routing": "cost",
}

# What LiteLLM's other strategies do, and what shieldes does about it instead
_UNMAPPED_STRATEGY = ("shieldes' default, adaptive (weights times each deployment's health), is kept; the "
                      "deployments' rpm/tpm quotas (imported) are held cluster-wide, so a deployment at its quota "
                      "is passed over as LiteLLM's usage-based routing does")


# (where, the file's setting, its value) of each timeout, retry or breaker setting a file gives
Found = list[tuple[str, str, Any]]


def node_notes(found: Found) -> list[str]:
    """One note per shieldes variable the `found` settings map to: the file's values (a file may give
    several, per provider) and the value to set on every node (the largest: no call the file allowed
    is cut short or retried less)."""
    notes: list[str] = []
    by_var: dict[str, list[tuple[str, str, Any]]] = {}
    for where, name, value in found:
        by_var.setdefault(NODE_SETTINGS[name][0], []).append((where, name, value))
    for var, given in by_var.items():
        numbers = [v * NODE_SETTINGS[n][1] for _, n, v in given
                   if isinstance(v, int | float) and not isinstance(v, bool)]
        said = ", ".join(f"{w}.{n} {v!r}" for w, n, v in given)
        what = NODE_SETTINGS[given[0][1]][2]
        if not numbers:
            notes.append(f"{said} not imported: shieldes sets it per node with {var} ({what}); set it there")
            continue
        largest = f"{max(numbers):g}"
        which = "" if len(set(numbers)) == 1 else "; the largest the file gives"
        notes.append(f"{said} not imported: shieldes sets it per node, for every provider: set {var}={largest}"
                     f" ({what}{which}) on every node (docs/configuration.md)")
    return notes


NO_SETTING = ("shieldes has no such setting, or sets it per node (SHIELDES_* environment variables, "
              "docs/configuration.md)")
# LiteLLM adds an entry's other litellm_params (temperature, max_tokens, ...) to each request it sends
PER_REQUEST = "shieldes sends requests as clients write them (no per-deployment request defaults)"


def settings_notes(where: str, settings: Mapping[str, Any], found: Found, handled: Iterable[str] = (),
                   others: str = NO_SETTING) -> list[str]:
    """The timeout/retry/breaker settings in `settings` are added to `found` (node_notes says them);
    the note naming the others left out (`handled`: the ones the importer maps itself; `others`: why
    those are not imported)."""
    notes: list[str] = []
    other: list[str] = []
    skip = set(handled)
    for name, value in settings.items():
        if name in skip:
            continue
        if name in NODE_SETTINGS:
            found.append((where, name, value))
        else:
            other.append(str(name))
    if other:
        notes.append(f"{where} {', '.join(sorted(other))} not imported: {others}")
    return notes


def litellm_strategy(value: Any) -> tuple[str | None, str | None]:
    """(shieldes strategy, note) for LiteLLM's router_settings.routing_strategy."""
    strategy = LITELLM_STRATEGIES.get(str(value))
    if strategy is not None:
        return strategy, None
    return None, f"router_settings.routing_strategy {value!r} has no shieldes equivalent: {_UNMAPPED_STRATEGY}"
