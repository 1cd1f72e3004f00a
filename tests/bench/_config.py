"""Sizes the benchmarks share: full by default, small with ``BENCH_QUICK=1``.

The quick mode exists so that CI runs every benchmark end to end (a benchmark that no one runs
rots): small sizes and one repetition, the same baselines measured in the same run and the
same ratios printed. Its figures are too small to judge a target by; nothing in either mode
asserts a time.
"""

from __future__ import annotations

import os
from typing import TypeVar

__all__ = ["QUICK", "repeats", "sized"]

T = TypeVar("T")

#: ``BENCH_QUICK=1`` (any value but empty or 0): small sizes, one repetition.
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


def sized(full: T, quick: T) -> T:
    """``full``, or ``quick`` in the quick mode."""
    return quick if QUICK else full


def repeats(full: int) -> int:
    """Repetitions: ``RAYPIPE_BENCH_REPEATS`` when set, else ``full`` (1 in the quick mode)."""
    value = os.environ.get("RAYPIPE_BENCH_REPEATS")
    return int(value) if value else sized(full, 1)
