"""Process memory figures for `/health`: resident set size and heap in use, in bytes.

Written by hand because no kept library reports the heap: psutil gives RSS but not the allocator's
in-use bytes. On glibc (our Linux images) `mallinfo2()` reports the bytes malloc has handed out,
which covers Python objects (pymalloc arenas come from the same allocator for large blocks, small
objects from its arenas); elsewhere we fall back to tracemalloc's figure when tracing is on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
import tracemalloc
from collections.abc import Callable
from functools import cache
from typing import cast


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return cast(Callable[[], _MallInfo2], function)


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # Peak, not current, but the closest figure without /proc (kilobytes on Linux, bytes on macOS).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def heap_used_bytes() -> int:
    function = _mallinfo2()
    if function is not None:
        info = function()
        return int(info.uordblks + info.hblkhd)
    if tracemalloc.is_tracing():
        return tracemalloc.get_traced_memory()[0]
    return 0
