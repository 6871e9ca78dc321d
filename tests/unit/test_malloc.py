"""The node's allocator settings are accepted by the C library it runs on (glibc here)."""

from __future__ import annotations

import platform

import pytest

from shieldes.malloc import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_every_setting() -> None:
    assert keep_freed_memory()  # each mallopt call answers 1 when its value is in range
