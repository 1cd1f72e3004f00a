"""Node-log capture: a node that prints 100,000 lines, captured against uncaptured.

The same loop runs three ways in this process, with fds 1 and 2 pointing at a file as in a
Ray worker (whose output goes to its log files):

1. uncaptured: ``print`` to that file, as before node logs existed (the baseline);
2. captured: the same inside an attempt's capture (ray_nodes.engine.capture) writing the
   attempt's log (ray_nodes.logs) to a local artifact root, the log's close included;
3. native: the same number of lines written with ``os.write`` to fd 1, as a C library would,
   uncaptured and captured (the descriptor-level path: the pipe and its reader thread).

Reported: seconds for each and the ratios captured / uncaptured (the overhead of capture per
line follows). The cap is raised so that every line is kept (the default, 4 MiB, would keep
the head and tail of this log); nothing here asserts a time.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ray_nodes.engine.capture import captured
from ray_nodes.logs import LogWriter, read_log
from tests.bench._config import repeats, sized

LINES = sized(100_000, 10_000)
REPEATS = repeats(3)


def printing() -> None:
    for i in range(LINES):
        print(f"epoch {i}: loss=0.{i:06d} accuracy=0.{LINES - i:06d}")


def native() -> None:
    for i in range(LINES):
        os.write(1, f"[native] iteration {i}: gain={i * 0.5:.3f}\n".encode())


@contextlib.contextmanager
def worker_like_descriptors(path: Path) -> Iterator[None]:
    """fds 1 and 2 on a file for the block, as in a Ray worker; restored after."""
    sys.stdout.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(target, 1)
    os.dup2(target, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


def timed(fn: Callable[[], None], root: Path | None, attempt: int) -> float:
    started = time.perf_counter()
    if root is None:
        fn()
        sys.stdout.flush()
    else:
        writer = LogWriter(str(root), "bench", fn.__name__, attempt, max_bytes=1 << 30)
        with captured(writer):
            fn()
        writer.close()
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "artifacts", Path(tmp) / "worker.out"
        results: dict[str, list[float]] = {}
        with worker_like_descriptors(out):
            timed(printing, None, 0)  # warm-up: the capture's pipes and threads, first print
            timed(printing, root, 99)
            for attempt in range(1, REPEATS + 1):
                for fn in (printing, native):
                    results.setdefault(f"{fn.__name__} uncaptured", []).append(timed(fn, None, 0))
                    results.setdefault(f"{fn.__name__} captured", []).append(
                        timed(fn, root, attempt)
                    )
        kept = len(read_log(str(root), "bench", "printing", 1, limit=LINES + 10).lines)
    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"{LINES:,} lines per run, median of {REPEATS}; every line kept: {kept == LINES}")
    for kind in ("printing", "native"):
        base, cap = median[f"{kind} uncaptured"], median[f"{kind} captured"]
        print(
            f"{kind:<8}  uncaptured {base:6.3f} s  captured {cap:6.3f} s  "
            f"ratio {cap / base:5.2f}  ({(cap - base) / LINES * 1e6:.1f} us per line)"
        )


if __name__ == "__main__":
    main()
