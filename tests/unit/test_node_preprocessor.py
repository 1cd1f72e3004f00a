"""The preprocessor's partitioned algorithm equals pandas on the whole frame, for any
partitioning, dtype mix and hash collisions (partitions run in-process here; the Ray fan-out
is tested in tests/integration/test_nodes.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from ray_nodes.data import output_of
from ray_nodes.node import NodeContext
from ray_nodes.nodes import data_preprocessor as dp
from ray_nodes.nodes import partitions as parts


def objects(*values: object) -> np.ndarray:
    """Values with None among them as the object array numpy makes of such a list."""
    return np.array(values, dtype=object)


def messy_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """NaNs of every kind, duplicates across partitions, -0.0 vs 0.0, a shuffled index."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.integers(0, 4, n).astype(float),
            "b": rng.choice([1.5, 2.5, np.nan, -0.0, 0.0], n),
            "s": pd.Series(rng.choice(objects("x", "y", None, "z"), n), dtype="str"),
            "c": pd.Categorical(rng.choice(objects("u", "v", None), n)),
            "i": rng.integers(0, 3, n),
            "o": pd.Series(rng.choice(objects(True, False, None), n), dtype=object),
            "I": pd.array(rng.choice(objects(1, 2, None), n), dtype="Int64"),
            "d": pd.to_datetime(rng.choice(objects("2020-01-01", "2021-06-30", None), n)),
            "f32": rng.choice([1.25, np.nan, 3.5], n).astype("float32"),
        }
    )
    frame.loc[rng.random(n) < 0.2, "a"] = np.nan
    frame.index = pd.Index(rng.permutation(n) * 3 + 7)
    return frame


def pandas_result(
    frame: pd.DataFrame, drop_duplicates: bool, drop_missing: bool, fill: str | None, value: Any
) -> pd.DataFrame:
    out = frame
    if drop_duplicates:
        out = out.drop_duplicates()
    if drop_missing:
        out = out.dropna()
    if fill == "mean":
        out = out.fillna(out.mean(numeric_only=True))
    elif fill == "median":
        out = out.fillna(out.median(numeric_only=True))
    elif fill == "most_frequent":
        out = out.fillna(out.mode().iloc[0])
    elif fill == "constant":
        out = out.fillna(value)
    return out


def run_local(frame: pd.DataFrame, partitions: int, **options: Any) -> tuple[pd.DataFrame, dict]:
    ranges = parts.row_ranges(len(frame), partitions)
    return dp.preprocess(frame, parts.LocalRunner(frame), ranges, **options)


@pytest.mark.parametrize("partitions", [1, 2, 3, 8])
@pytest.mark.parametrize("drop_duplicates", [False, True])
@pytest.mark.parametrize("fill", [None, "median", "most_frequent"])
def test_equals_pandas_exactly(partitions: int, drop_duplicates: bool, fill: str | None) -> None:
    # Int64 means are not whole numbers, which pandas (and so the node) cannot fill into
    # an Int64 column; median and mode stay inside each column's values.
    frame = messy_frame()
    got, counts = run_local(frame, partitions, drop_duplicates=drop_duplicates, fill_missing=fill)
    expected = pandas_result(frame, drop_duplicates, False, fill, None)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert counts["rows_out"] == len(expected)


@pytest.mark.parametrize("partitions", [1, 3])
def test_dropna_after_drop_duplicates(partitions: int) -> None:
    frame = messy_frame()
    got, counts = run_local(frame, partitions, drop_duplicates=True, drop_missing=True)
    expected = frame.drop_duplicates().dropna()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert counts["duplicates_dropped"] == float(frame.duplicated().sum())
    assert counts["rows_with_missing_dropped"] == float(
        len(frame.drop_duplicates()) - len(expected)
    )


@pytest.mark.parametrize("partitions", [1, 2, 5])
def test_mean_fill_equals_pandas_within_rounding(partitions: int) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(1000, 4)) * 1e6, columns=list("wxyz"))
    frame = pd.concat([frame, frame.iloc[::7]], ignore_index=True)
    frame = frame.mask(rng.random(frame.shape) < 0.1)
    frame["label"] = pd.Series(rng.choice(["p", "q"], len(frame)), dtype="str")
    got, _ = run_local(frame, partitions, drop_duplicates=True, fill_missing="mean")
    expected = pandas_result(frame, True, False, "mean", None)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-13)


@pytest.mark.parametrize(
    ("columns", "value"),
    [
        (["a", "b", "i", "f32"], 0),
        (["a", "b", "i", "f32"], -1.5),
        (["s", "o"], "missing"),
        (None, {"b": 9.0, "s": "?", "f32": 2.0}),
    ],
)
def test_constant_fill(columns: list[str] | None, value: Any) -> None:
    frame = messy_frame()
    if columns is not None:
        frame = frame[columns]
    got, _ = run_local(frame, 4, drop_duplicates=True, fill_missing="constant", fill_value=value)
    expected = pandas_result(frame, True, False, "constant", value)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_drop_missing_makes_filling_a_no_op() -> None:
    frame = messy_frame()
    got, _ = run_local(frame, 3, drop_missing=True, fill_missing="median")
    pd.testing.assert_frame_equal(got, frame.dropna(), check_exact=True)


@pytest.mark.parametrize("partitions", [1, 2, 4])
def test_hash_collisions_never_drop_distinct_rows(
    monkeypatch: pytest.MonkeyPatch, partitions: int
) -> None:
    # A three-valued "hash" makes almost every row a duplicate candidate of a different row;
    # the value comparison must catch each one.
    monkeypatch.setattr(dp, "row_hashes_fn", lambda part: dp._row_hashes(part) % np.uint64(3))
    frame = messy_frame()
    for drop_missing, fill in ((False, None), (True, None), (False, "most_frequent")):
        got, counts = run_local(
            frame, partitions, drop_duplicates=True, drop_missing=drop_missing, fill_missing=fill
        )
        expected = pandas_result(frame, True, drop_missing, fill, None)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert counts["hash_collisions"] > 0


def test_equal_rows_hash_equal_whatever_their_missing_marker() -> None:
    frame = pd.DataFrame(
        {
            "f": [0.0, -0.0, np.nan, float("nan")],
            "o": pd.Series([None, None, np.nan, pd.NA], dtype=object),
        }
    )
    hashes = dp._row_hashes(frame)
    assert hashes[0] == hashes[1]
    assert hashes[2] == hashes[3]
    assert frame.duplicated().tolist() == [False, True, False, True]


def test_no_options_and_empty_frames_pass_through() -> None:
    frame = messy_frame(10)
    got, counts = run_local(frame, 2)
    assert got is frame
    assert counts["rows_out"] == 10
    empty = frame.iloc[:0]
    got, _ = run_local(empty, 4, drop_duplicates=True, fill_missing="median")
    pd.testing.assert_frame_equal(got, empty.drop_duplicates())


def test_row_ranges_cover_every_row_once() -> None:
    assert parts.row_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert parts.row_ranges(2, 5) == [(0, 1), (1, 2)]
    assert parts.row_ranges(0, 4) == [(0, 0)]
    assert parts.default_partitions(10) == 1


def test_partitions_spread_over_nodes_in_proportion_to_their_cpus() -> None:
    def node(node_id: str, cpus: float, alive: bool = True) -> dict[str, Any]:
        return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": cpus, "GPU": 1.0}}

    cluster = [node("head", 2), node("gpu", 1), node("cpu", 2), node("gone", 4, alive=False)]
    slots = parts.spread_slots(cluster)
    assert slots == ["cpu", "gpu", "head", "cpu", "head"]  # interleaved, gone left out
    assert parts.spread_slots(list(reversed(cluster))) == slots  # whatever order Ray lists
    # One node, or one with CPUs among GPU-only ones: Ray's own placement.
    assert parts.spread_slots([node("head", 2)]) == []
    assert parts.spread_slots([node("head", 2), node("accel", 0)]) == []
    assert parts.spread_slots([]) == []


def test_node_refuses_duplicate_column_names() -> None:
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    ctx = NodeContext("r", "runs/r", "p", "clean", 1, {"drop_duplicates": True}, 1.0)
    with pytest.raises(ValueError, match=r"duplicate columns \['a'\]"):
        dp.DataPreprocessorNode().run(ctx, [frame])


def test_node_runs_in_process_with_one_partition() -> None:
    frame = messy_frame()
    ctx = NodeContext(
        "r", "runs/r", "p", "clean", 1,
        {"drop_duplicates": True, "fill_missing": "most_frequent", "partitions": 1}, 1.0,
    )  # fmt: skip
    got = output_of(dp.DataPreprocessorNode().run(ctx, [frame]))
    pd.testing.assert_frame_equal(
        got, pandas_result(frame, True, False, "most_frequent", None), check_exact=True
    )
