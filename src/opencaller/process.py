"""Process-wide settings applied once at start, before any thread exists.

glibc's malloc gives each thread that allocates its own arena (up to 8 per core). With SQLite
every connection is a thread (aiosqlite), so memory freed in one arena is not reused by the
others and the process's RSS crept up by ~5 MB a minute under steady load (bench/soak.py,
BENCHMARKS.md). Two arenas keep it flat at no measurable cost in speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("opencaller")

_M_ARENA_MAX = -8  # mallopt parameter number (glibc malloc.h)


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas in this process and in processes it starts (the
    ``MALLOC_ARENA_MAX`` environment variable is read by every new process). ``0`` leaves the
    default. Returns whether this process's allocator took the cap."""
    if arenas <= 0 or not sys.platform.startswith("linux"):
        return False
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl has no arenas to cap)
        return False
