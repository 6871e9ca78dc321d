"""Configuration problems only this node can see (a provider key variable not set in its
environment), logged loudly once when they appear: at startup and whenever the config changes."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from shieldes.projections.state import ConfigState

log = logging.getLogger("shieldes.config")


def missing_env_keys(config: ConfigState, environ: Mapping[str, str]) -> set[tuple[str, str]]:
    """(deployment, variable) for every provider whose `env:VAR` key is unset or empty here."""
    out = set()
    for dep in config.providers.values():
        ref = dep.secret_ref
        if ref and ref.startswith("env:") and not environ.get(ref[4:]):
            out.add((dep.name, ref[4:]))
    return out


class ConfigWatch:
    """Reports each problem once while it lasts; a fixed and re-broken one is reported again."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.reported: set[tuple[str, str]] = set()
        self._seen: ConfigState | None = None

    def check(self, config: ConfigState) -> list[tuple[str, str]]:
        if config is self._seen:  # copy-on-write config: identity tells a change
            return []
        self._seen = config
        missing = missing_env_keys(config, self.environ)
        new = sorted(missing - self.reported)
        self.reported = missing
        for dep, var in new:
            log.error("CONFIG ERROR: provider %r reads its API key from environment variable %s, which is not "
                      "set on this node; requests routed to it will fail over or fail until you set %s and "
                      "restart this node", dep, var, var)
        return new
