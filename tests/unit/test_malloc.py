"""The node's allocator settings are accepted by the C library it runs on (glibc here)."""

from __future__ import annotations

import platform

import pytest

from shieldes.malloc import huge_pages_environment, keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_every_setting() -> None:
    assert keep_freed_memory()  # each mallopt call answers 1 when its value is in range


THP_MADVISE = "always [madvise] never\n"


@pytest.mark.parametrize(("environ", "libc", "thp", "restart"), [
    ({"PATH": "/bin"}, "glibc 2.36", THP_MADVISE, True),
    ({"PATH": "/bin"}, "glibc 2.35", "[always] madvise never\n", True),
    ({"PATH": "/bin"}, "glibc 2.34", THP_MADVISE, False),  # the tunable came with 2.35
    ({"PATH": "/bin"}, "glibc 2.36", "always madvise [never]\n", False),  # the kernel's THP off
    ({"PATH": "/bin"}, "glibc 2.36", None, False),  # no THP in this kernel
    ({"PATH": "/bin"}, None, THP_MADVISE, False),  # musl, macOS
    ({"PATH": "/bin"}, "glibc x.y", THP_MADVISE, False),
    ({"GLIBC_TUNABLES": ""}, "glibc 2.36", THP_MADVISE, False),  # the operator's choice, even empty
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "glibc 2.36", THP_MADVISE, False),
])
def test_a_node_restarts_on_huge_pages_only_where_they_apply(environ: dict[str, str], libc: str | None,
                                                             thp: str | None, restart: bool) -> None:
    got = huge_pages_environment(environ, libc, thp)
    assert got == ({**environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"} if restart else None)
