"""Shared by the examples: where the gateway is and which virtual key to use, from the environment.

    SHIELDES_URL   gateway base URL (default http://127.0.0.1:8080)
    SHIELDES_KEY   a virtual key from `shieldes key create --name demo --json`
    SHIELDES_MODEL model to ask for (default gpt-4o-mini)
"""

from __future__ import annotations

import os
import sys


def gateway() -> tuple[str, str]:
    url = os.environ.get("SHIELDES_URL", "http://127.0.0.1:8080").rstrip("/")
    key = os.environ.get("SHIELDES_KEY", "")
    if not key:
        sys.exit("error: set SHIELDES_KEY to a virtual key (create one: shieldes key create --name demo)")
    return url, key


def model(default: str = "gpt-4o-mini") -> str:
    return os.environ.get("SHIELDES_MODEL", default)
