"""`make bench`: run every benchmark module under tests/bench/ and print its report.

Each benchmark measures its baseline (a bare gRPC server, raw Ray, a plain script) in the same
run on the same machine and reports ratios, never absolute pass/fail times.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    selected = set(argv)
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    failures = 0
    for name in names:
        if selected and name not in selected:
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"tests.bench.{name}")
        try:
            module.main()
        except Exception as e:  # one broken benchmark must not hide the others' figures
            failures += 1
            print(f"{name} failed: {type(e).__name__}: {e}", flush=True)
        print(f"({name} took {time.perf_counter() - started:.1f} s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
