"""The ``data_preprocessor`` node type: drop duplicates, drop or fill missing values, fanned out.

How the fan-out stays exact
---------------------------
The dataset is put in Ray's object store once; each partition task reads its rows as a
zero-copy slice of it. Three rounds of tasks, each followed by a cheap combine in the node:

1. *Scan*: each partition hashes its rows (64-bit, normalized so that rows pandas calls equal
   hash equal: ``-0.0``/``0.0`` and every kind of missing value) and marks rows with missing
   values. The node factorizes the concatenated hashes: a row whose hash appeared before is a
   duplicate candidate, and its representative is the first row with that hash, wherever it
   is. This is pandas' ``keep="first"`` decision made on the whole dataset at once.
2. *Verify and measure*: each partition compares its duplicate candidates with their
   representatives value by value (so a hash collision can never drop a row); rows that
   collide are settled exactly by pandas' ``duplicated`` on just the rows sharing the hash.
   The same tasks compute partial statistics over the rows that stay: sums and counts for
   means, the values themselves for exact medians, value counts for modes (for float
   columns, sorted distinct values with their counts, which merge by sorting again: many
   times faster than hashing floats).
3. *Apply*: each partition filters its rows and fills missing values with the combined
   statistics; the node concatenates the parts in order, keeping the original index.

Means combine from per-partition sums, so they may differ from pandas' single sum in the last
bits (a few ulps); medians and modes are exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import pandas as pd

from ray_nodes.data import Dataset, expect_input, node_result
from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem, ResourceDefaults
from ray_nodes.nodes.partitions import (
    PartitionRunner,
    default_partitions,
    make_runner,
    row_ranges,
)

__all__ = ["FILL_METHODS", "DataPreprocessorNode", "preprocess"]

T = TypeVar("T")

#: ``fill_missing`` methods.
FILL_METHODS = ("mean", "median", "most_frequent", "constant")


# -- partition work (runs inside Ray tasks; module-level so workers import, not pickle, it) ---


def _is_float(dtype: Any) -> bool:
    return pd.api.types.is_float_dtype(dtype)


def _column_hash(column: pd.Series) -> np.ndarray:
    """64-bit hashes of a column's values; values pandas' ``duplicated`` treats as equal hash
    equal (all NaNs alike, ``-0.0`` like ``0.0``, every missing marker of an object column)."""
    if _is_float(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # -0.0 -> 0.0
        values[np.isnan(values)] = np.nan  # one NaN bit pattern
        return pd.util.hash_array(values)
    if isinstance(column.dtype, np.dtype):
        # Object columns are factorized first (categorize=True), which maps None, NaN and
        # pd.NA to one code, as duplicated() does.
        return pd.util.hash_array(column.to_numpy(), categorize=True)
    return pd.util.hash_array(column.array)


def _row_hashes(part: pd.DataFrame) -> np.ndarray:
    """Row hashes, combined across columns as ``pandas.util.hash_pandas_object`` does."""
    out = np.full(len(part), 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    width = part.shape[1]
    for i in range(width):
        out ^= _column_hash(part.iloc[:, i])
        out *= mult
        mult += np.uint64(82520 + 2 * (width - i))
    out += np.uint64(97531)
    return out


def _scan(
    frame: pd.DataFrame, start: int, stop: int, hashes: bool, missing: bool
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Round 1: row hashes, rows with a missing value, and columns with a missing value."""
    part = frame.iloc[start:stop]
    isna = part.isna().to_numpy()
    row_hashes = row_hashes_fn(part) if hashes else None
    rows = isna.any(axis=1) if missing else None
    return row_hashes, rows, isna.any(axis=0)


# Indirection so tests can substitute a weak hash and exercise collision handling.
row_hashes_fn: Callable[[pd.DataFrame], np.ndarray] = _row_hashes


def _equal_values(a: Any, b: Any) -> np.ndarray:
    """Elementwise equality as ``duplicated`` sees it: missing equals missing."""
    na_a, na_b = np.asarray(pd.isna(a)), np.asarray(pd.isna(b))
    with np.errstate(invalid="ignore"):
        eq = a == b
    eq = np.asarray(eq.to_numpy(dtype=bool, na_value=False) if hasattr(eq, "to_numpy") else eq)
    return np.where(na_a | na_b, na_a & na_b, eq.astype(bool))


def _column_values(column: pd.Series) -> Any:
    if _is_float(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return column.array


def _measure(
    frame: pd.DataFrame,
    start: int,
    stop: int,
    keep: np.ndarray | None,
    candidates: tuple[np.ndarray, np.ndarray] | None,
    method: str | None,
    columns: Sequence[Any],
) -> tuple[np.ndarray, list[Any]]:
    """Round 2: duplicate candidates that differ from their representative, and partial
    statistics of ``columns`` over the rows that stay."""
    mismatched = np.empty(0, dtype=np.int64)
    if candidates is not None and len(candidates[0]):
        rows, reps = candidates
        same = np.ones(len(rows), dtype=bool)
        for i in range(frame.shape[1]):
            column = frame.iloc[:, i]
            same &= _equal_values(
                _column_values(column.iloc[rows]), _column_values(column.iloc[reps])
            )
        mismatched = rows[~same]
    part = frame.iloc[start:stop]
    partials: list[Any] = []
    for name in columns if method is not None else ():
        column = part[name]
        if method == "most_frequent":
            kept = column if keep is None else column[keep]
            if isinstance(kept.dtype, np.dtype) and _is_float(kept.dtype):
                # Sorting is many times faster than hashing floats, and sorted counts merge
                # across partitions by sorting again.
                values = kept.to_numpy()
                partials.append(
                    _SortedCounts(*np.unique(values[~np.isnan(values)], return_counts=True))
                )
            else:
                partials.append(kept.value_counts(dropna=True, sort=False))
            continue
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if keep is not None:
            values = values[keep]
        present = values[~np.isnan(values)]
        partials.append((float(present.sum()), len(present)) if method == "mean" else present)
    return mismatched, partials


def _apply(
    frame: pd.DataFrame, start: int, stop: int, keep: np.ndarray | None, fill: Any
) -> pd.DataFrame:
    """Round 3: this partition's rows that stay, with missing values filled."""
    part = frame.iloc[start:stop]
    if keep is not None and not keep.all():
        part = part[keep]
    if fill is not None:
        part = part.fillna(fill)
    return part


# -- combining ---------------------------------------------------------------------------------


def _first_occurrences(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(duplicate, representative)``: whether each hash appeared earlier, and the position
    of its first appearance."""
    codes, _ = pd.factorize(hashes)
    # factorize numbers values in order of first appearance, so a row is a first occurrence
    # exactly when its code exceeds every code before it.
    seen = np.maximum.accumulate(codes)
    first = np.empty(len(codes), dtype=bool)
    if len(codes):
        first[0] = True
        first[1:] = codes[1:] > seen[:-1]
    representative = np.flatnonzero(first)[codes]
    return ~first, representative


def _settle_collisions(
    frame: pd.DataFrame, duplicate: np.ndarray, representative: np.ndarray, rows: np.ndarray
) -> None:
    """Decide exactly, with pandas, the rows whose hash group holds rows that differ."""
    groups = np.unique(representative[rows])
    members = np.flatnonzero(np.isin(representative, groups))
    duplicate[members] = frame.take(members).duplicated(keep="first").to_numpy()


class _SortedCounts(NamedTuple):
    """A float column's distinct values (sorted, no NaN) and how often each occurs."""

    values: np.ndarray
    counts: np.ndarray


def _most_frequent_float(partials: Sequence[_SortedCounts], dtype: Any) -> tuple[bool, Any]:
    """``(found, value)`` from sorted counts: the smallest of the most frequent values."""
    if len(partials) == 1:
        values, counts = partials[0]
    else:
        merged, where = np.unique(np.concatenate([v for v, _ in partials]), return_inverse=True)
        weights = np.concatenate([c for _, c in partials]).astype(np.float64)
        values, counts = merged, np.bincount(where, weights=weights, minlength=len(merged))
    if not len(values):
        return False, None
    return True, dtype.type(values[int(np.argmax(counts))])  # the first maximum: the smallest


def _most_frequent(partials: Sequence[Any], dtype: Any) -> tuple[bool, Any]:
    """``(found, value)``: the smallest most frequent value, as ``df.mode().iloc[0]``."""
    if partials and isinstance(partials[0], _SortedCounts):
        return _most_frequent_float(partials, dtype)
    counts = pd.concat(list(partials)).groupby(level=0, sort=False, observed=True).sum()
    counts = counts[counts > 0]
    if counts.empty:
        return False, None
    candidates = pd.Series(counts.index[counts == counts.max()])
    if candidates.dtype != dtype:
        candidates = candidates.astype(dtype)
    # Each candidate once: Series.mode returns them all, ordered as pandas orders modes.
    return True, candidates.mode(dropna=True).iloc[0]


def _fill_values(
    frame: pd.DataFrame, method: str, columns: Sequence[Any], partials: Sequence[list[Any]]
) -> dict[Any, Any]:
    fill: dict[Any, Any] = {}
    for j, name in enumerate(columns):
        pieces = [p[j] for p in partials]
        if method == "mean":
            count = sum(n for _, n in pieces)
            if count:
                fill[name] = sum(s for s, _ in pieces) / count
        elif method == "median":
            values = np.concatenate(pieces)
            if len(values):
                fill[name] = float(pd.Series(values).median())
        else:
            found, value = _most_frequent(pieces, frame[name].dtype)
            if found:
                fill[name] = value
    return fill


def preprocess(
    frame: pd.DataFrame,
    runner: PartitionRunner,
    ranges: Sequence[tuple[int, int]],
    *,
    drop_duplicates: bool = False,
    drop_missing: bool = False,
    fill_missing: str | None = None,
    fill_value: Any = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The node's algorithm over explicit partitions; returns the frame and its counts.

    The result equals ``frame.drop_duplicates()``, then ``.dropna()``, then ``.fillna(...)``
    as the module doc describes, for any partitioning of the rows into ``ranges``.
    """
    n = len(frame)
    counts = {"rows_in": float(n), "partitions": float(len(ranges))}
    fill_missing = None if drop_missing else fill_missing  # after dropna nothing is missing
    if not (drop_duplicates or drop_missing or fill_missing) or frame.shape[1] == 0:
        counts["rows_out"] = float(n)
        return frame, counts

    # Round 1: hashes and missing values.
    scans = runner.map(_scan, [(a, b, drop_duplicates, drop_missing) for a, b in ranges])
    duplicate = representative = missing = None
    if drop_duplicates:
        duplicate, representative = _first_occurrences(np.concatenate([s[0] for s in scans]))
    if drop_missing:
        missing = np.concatenate([s[1] for s in scans])
    has_na = np.logical_or.reduce([s[2] for s in scans])
    del scans

    def keep_mask() -> np.ndarray | None:
        if duplicate is None:
            return None if missing is None else ~missing
        return ~duplicate if missing is None else ~duplicate & ~missing

    stat_columns: list[Any] = []
    if fill_missing in ("mean", "median", "most_frequent"):
        stat_columns = list(frame.columns[has_na])
        if fill_missing != "most_frequent":
            # Exactly the columns that pandas' mean/median(numeric_only=True) covers.
            numeric = set(frame.iloc[:0].mean(numeric_only=True).index)
            stat_columns = [c for c in stat_columns if c in numeric]
    method = fill_missing if stat_columns else None

    # Round 2: verify duplicate candidates, and partial statistics for filling.
    keep = keep_mask()
    measured: list[tuple[np.ndarray, list[Any]]] = []
    if duplicate is not None or method is not None:
        calls = []
        for a, b in ranges:
            candidates = None
            if duplicate is not None and representative is not None:
                rows = np.flatnonzero(duplicate[a:b]) + a
                candidates = (rows, representative[rows])
            calls.append(
                (a, b, None if keep is None else keep[a:b], candidates, method, stat_columns)
            )
        measured = runner.map(_measure, calls)
        mismatched = np.concatenate([m for m, _ in measured])
        if len(mismatched) and duplicate is not None and representative is not None:
            _settle_collisions(frame, duplicate, representative, mismatched)
            counts["hash_collisions"] = float(len(mismatched))
            keep = keep_mask()
            if method is not None:
                calls = [
                    (a, b, keep_slice(keep, a, b), None, method, stat_columns) for a, b in ranges
                ]
                measured = runner.map(_measure, calls)

    fill: Any = None
    if method is not None:
        fill = _fill_values(frame, method, stat_columns, [p for _, p in measured]) or None
    elif fill_missing == "constant" and has_na.any():
        fill = fill_value
    if duplicate is not None:
        counts["duplicates_dropped"] = float(duplicate.sum())
    if missing is not None:
        dropped = missing if duplicate is None else missing & ~duplicate
        counts["rows_with_missing_dropped"] = float(dropped.sum())
    if fill is None and (keep is None or keep.all()):
        counts["rows_out"] = float(n)
        return frame, counts

    # Round 3: filter and fill each partition, then put the parts back together in order.
    parts = runner.map(_apply, [(a, b, keep_slice(keep, a, b), fill) for a, b in ranges])
    non_empty = [p for p in parts if len(p)] or parts[:1]
    out = non_empty[0] if len(non_empty) == 1 else pd.concat(non_empty)
    counts["rows_out"] = float(len(out))
    return out, counts


def keep_slice(keep: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    """The rows of ``[start, stop)`` that stay, or None when no row filter applies."""
    return None if keep is None else keep[start:stop]


# -- the node type -----------------------------------------------------------------------------


class DataPreprocessorNode(NodeType):
    """Clean a dataset: drop duplicate rows, drop rows with missing values, fill missing values.

    The steps run in this order, and the result (values, dtypes, row order and index) equals
    pandas on the whole dataset::

        df = df.drop_duplicates()                  # drop_duplicates: true (keep the first)
        df = df.dropna()                           # drop_missing: true
        df = df.fillna(df.mean(numeric_only=True))     # fill_missing: mean
        df = df.fillna(df.median(numeric_only=True))   # fill_missing: median
        df = df.fillna(df.mode().iloc[0])              # fill_missing: most_frequent
        df = df.fillna(fill_value)                     # fill_missing: constant

    ``mean`` and ``median`` fill numeric columns only (as ``numeric_only=True``);
    ``most_frequent`` fills every column, a tie going to the smallest value; ``constant``
    fills every column. Statistics are those of the rows left after the drops. Means are
    combined from per-partition sums and can differ from pandas' in the last bits.

    The work fans out: the dataset is split into ``partitions`` row ranges processed by
    parallel Ray tasks, and statistics that span the dataset (which rows duplicate rows of
    another partition, means, exact medians, modes) are combined across them, so the result
    does not depend on the partitioning. See the module documentation for how.

    Parameters:
        drop_duplicates (bool, default false): drop rows equal to an earlier row (all
            columns compared, missing equals missing; the index is ignored).
        drop_missing (bool, default false): drop rows with any missing value.
        fill_missing (``mean`` | ``median`` | ``most_frequent`` | ``constant``): fill what is
            still missing. Pointless together with ``drop_missing``, which leaves nothing
            missing.
        fill_value (number, string, boolean, or column -> value): the value for
            ``constant``; required with it and refused without it.
        partitions (integer >= 1): how many parallel tasks. Default: the cluster's CPUs, but
            no more than one per 1,000,000 rows: below that, on numeric data, moving the
            frame through the object store costs more than a second core saves. Set it
            explicitly for costly work (``most_frequent`` on text or other non-float columns,
            which counts values by hashing; float columns are counted by sorting).

    Input: a dataset. Output: a dataset.

    Metrics: ``rows_in``, ``rows_out``, ``partitions``, ``duplicates_dropped``,
    ``rows_with_missing_dropped``, ``seconds``.

    Example::

        - id: clean
          type: data_preprocessor
          depends_on: [load]
          params: {drop_duplicates: true, fill_missing: median}
    """

    type_name: ClassVar[str] = "data_preprocessor"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "drop_duplicates": {"type": "boolean", "default": False},
            "drop_missing": {"type": "boolean", "default": False},
            "fill_missing": {"enum": list(FILL_METHODS)},
            "fill_value": {
                "oneOf": [
                    {"type": ["number", "string", "boolean"]},
                    {
                        "type": "object",
                        "additionalProperties": {"type": ["number", "string", "boolean"]},
                    },
                ],
                "description": "The value (or column -> value) for fill_missing: constant.",
            },
            "partitions": {"type": "integer", "minimum": 1, "maximum": 4096},
        },
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.DATASET,)
    output: ClassVar[ArtifactKind] = ArtifactKind.DATASET
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """``fill_value`` goes with ``fill_missing: constant`` and only with it."""
        constant = params.get("fill_missing") == "constant"
        if constant and "fill_value" not in params:
            return [ParamProblem("fill_value", "required when fill_missing is constant")]
        if not constant and "fill_value" in params:
            return [ParamProblem("fill_value", "only used with fill_missing: constant")]
        return []

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Preprocess the input dataset as the parameters say."""
        frame: Dataset = expect_input(inputs[0], pd.DataFrame, self.type_name, "a dataset")
        if not frame.columns.is_unique:
            duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise ValueError(f"{self.type_name}: the dataset has duplicate columns {duplicated}")
        params = ctx.params
        partitions = int(params.get("partitions") or default_partitions(len(frame)))
        ranges = row_ranges(len(frame), partitions)
        started = time.perf_counter()
        runner = make_runner(frame, len(ranges), f"{ctx.pipeline_id}/{ctx.node_id}")
        out, metrics = preprocess(
            frame,
            runner,
            ranges,
            drop_duplicates=bool(params.get("drop_duplicates", False)),
            drop_missing=bool(params.get("drop_missing", False)),
            fill_missing=params.get("fill_missing"),
            fill_value=params.get("fill_value"),
        )
        del runner  # releases the frame's copy in the object store
        metrics["seconds"] = time.perf_counter() - started
        return node_result(out, metrics=metrics)
