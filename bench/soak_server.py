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
        with open(out, "a") as f:
            f.write(f"== {time.strftime('%H:%M:%S')} growth since the first snapshot\n")
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
