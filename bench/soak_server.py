"""``opencaller`` under tracemalloc, for bench/soak.py's ``--trace``.

Runs the CLI (``python -m bench.soak_server serve ...``). The first SIGUSR1 starts tracemalloc
(after start-up, which tracing would slow down a lot) and takes the baseline; each later one
appends the 25 allocation sites that grew most since then to ``$SOAK_TRACE_FILE``, so a soak
can ask a running server what keeps memory.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import tracemalloc
from types import FrameType

FRAMES = 8


def c_memory() -> str:
    """What C code holds: SQLite's own allocations and glibc malloc's totals."""
    import ctypes
    import ctypes.util

    parts = []
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        parts.append(f"sqlite {lib.sqlite3_memory_used() / 2**20:.1f} MiB")
    except OSError:
        pass
    try:

        class Mallinfo2(ctypes.Structure):
            _fields_ = [
                (n, ctypes.c_size_t)
                for n in (
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

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Mallinfo2
        m = libc.mallinfo2()
        parts.append(
            f"malloc in use {m.uordblks / 2**20:.1f} MiB, free in heap {m.fordblks / 2**20:.1f}"
            f" MiB, mmapped {m.hblkhd / 2**20:.1f} MiB"
        )
    except (OSError, AttributeError):
        pass
    return "; ".join(parts)


def main() -> None:
    out = os.environ.get("SOAK_TRACE_FILE", "soak-trace.txt")
    first: list[tracemalloc.Snapshot] = []

    def dump(_sig: int, _frame: FrameType | None) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        if not first:
            first.append(snap)
            return
        stats = snap.compare_to(first[0], "traceback")[:25]
        traced, _ = tracemalloc.get_traced_memory()
        with open(out, "a") as f:
            f.write(f"== {time.strftime('%H:%M:%S')} growth since the first snapshot\n")
            f.write(f"python heap (traced) {traced / 2**20:.1f} MiB; {c_memory()}\n")
            for s in stats:
                f.write(f"{s.size_diff / 1024:+10.1f} KiB {s.count_diff:+8d} blocks\n")
                # file:line only: formatting source lines would fill linecache, which then
                # shows up as growth itself
                for frame in s.traceback:
                    f.write(f"    {frame.filename}:{frame.lineno}\n")

    signal.signal(signal.SIGUSR1, dump)
    from opencaller.cli.main import app

    sys.argv = ["opencaller", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
