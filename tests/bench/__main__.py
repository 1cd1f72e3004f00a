"""`make bench`: run every benchmark module under tests/bench/, each in its own process.

Each benchmark measures its baseline (a bare gRPC server, raw Ray, a plain script) in the same
run on the same machine and reports ratios, never absolute pass/fail times.

Every module runs as ``python -m tests.bench.bench_x`` in a child process whose environment is
this one's without Ray's connection variables, so nothing one benchmark sets up (a local head
and its token, ``RAY_AUTH_*``, ``RAY_ADDRESS``) can reach the next, and the order never
matters. ``BENCH_QUICK=1`` runs them all at small sizes with one repetition (CI does, so a
broken benchmark fails the build); see tests/bench/_config.py.

Usage: ``python -m tests.bench [bench_engine ...]``; exits 1 if any benchmark failed.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

#: Variables that tie a process to one Ray cluster; a benchmark starts from none of them.
RAY_CONNECTION_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def benchmark_names(here: Path) -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in RAY_CONNECTION_VARS}


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = benchmark_names(here)
    unknown = sorted(set(argv) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}")
        return 2
    failed = []
    for name in names:
        if argv and name not in argv:
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        # One broken benchmark must not hide the others' figures: each runs to its end.
        code = subprocess.call(
            [sys.executable, "-m", f"tests.bench.{name}"],
            cwd=here.parents[1],
            env=clean_env(),
        )
        if code != 0:
            failed.append(name)
            print(f"{name} failed (exit {code})", flush=True)
        print(f"({name} took {time.perf_counter() - started:.1f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
