"""The data loader: CSV (pyarrow where it gives pandas' C-engine result), Parquet and Excel,
column selection, reader options, and paths confined to the data roots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ray_nodes.data import output_of
from ray_nodes.node import NodeContext
from ray_nodes.nodes.data_loader import DataLoaderNode, infer_format
from ray_nodes.paths import PathEscapeError


def load(root: Path, cpus: float = 1.0, **params: Any) -> pd.DataFrame:
    ctx = NodeContext("r", "runs/r", "p", "load", 1, params, cpus, data_roots=(root,))
    return output_of(DataLoaderNode().run(ctx, []))


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 50
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "n": rng.integers(-5, 5, n),
            "name": pd.Series(rng.choice(["a", "b", "c"], n), dtype="str"),
            "flag": rng.random(n) < 0.5,
        }
    )
    frame.loc[3, "x"] = np.nan
    return frame


@pytest.mark.parametrize("cpus", [1.0, 2.0])  # C engine on one CPU, pyarrow on two
def test_csv_equals_pandas_default_reader(tmp_path: Path, table: pd.DataFrame, cpus: float) -> None:
    table.to_csv(tmp_path / "t.csv", index=False)
    got = load(tmp_path, cpus, path="t.csv")
    pd.testing.assert_frame_equal(got, pd.read_csv(tmp_path / "t.csv"))


def test_csv_with_dates_falls_back_to_the_c_engine(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("when,v,empty\n2020-01-01,1,\n2020-01-02,2,\n")
    got = load(tmp_path, 2.0, path="d.csv")
    pd.testing.assert_frame_equal(got, pd.read_csv(tmp_path / "d.csv"))
    assert got["when"].dtype == pd.read_csv(tmp_path / "d.csv")["when"].dtype


def test_column_selection_in_the_given_order(tmp_path: Path, table: pd.DataFrame) -> None:
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        got = load(tmp_path, path=name, columns=["name", "x"])
        assert list(got.columns) == ["name", "x"]
        pd.testing.assert_series_equal(got["x"], table["x"])


def test_unknown_column_lists_the_file_columns(tmp_path: Path, table: pd.DataFrame) -> None:
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        with pytest.raises(KeyError, match=r"no column\(s\) \['nope'\].*'x', 'n', 'name', 'flag'"):
            load(tmp_path, path=name, columns=["x", "nope"])


def test_tsv_compressed_and_reader_options(tmp_path: Path, table: pd.DataFrame) -> None:
    table.to_csv(tmp_path / "t.tsv.gz", sep="\t", index=False)
    pd.testing.assert_frame_equal(load(tmp_path, path="t.tsv.gz"), table)
    (tmp_path / "semi.txt").write_text("# comment\na;b\n1;x\n-;y\n")
    got = load(tmp_path, path="semi.txt", options={"sep": ";", "comment": "#", "na_values": ["-"]})
    expected = pd.read_csv(tmp_path / "semi.txt", sep=";", comment="#", na_values=["-"])
    pd.testing.assert_frame_equal(got, expected)
    got = load(
        tmp_path, path="semi.txt", options={"sep": ";", "skiprows": 1, "dtype": {"b": "category"}}
    )
    assert isinstance(got["b"].dtype, pd.CategoricalDtype)


def test_parquet_keeps_types_and_applies_filters(tmp_path: Path, table: pd.DataFrame) -> None:
    table.to_parquet(tmp_path / "t.pq")
    pd.testing.assert_frame_equal(load(tmp_path, path="t.pq"), pd.read_parquet(tmp_path / "t.pq"))
    got = load(tmp_path, path="t.pq", options={"filters": [["n", ">", 0]]})
    assert (got["n"] > 0).all()
    assert len(got) == int((table["n"] > 0).sum())


def test_excel(tmp_path: Path, table: pd.DataFrame) -> None:
    with pd.ExcelWriter(tmp_path / "t.xlsx") as writer:
        table.to_excel(writer, sheet_name="first", index=False)
        table.head(5).to_excel(writer, sheet_name="second", index=False)
    expected = pd.read_excel(tmp_path / "t.xlsx", sheet_name="second")
    got = load(tmp_path, path="t.xlsx", options={"sheet_name": "second"}, columns=["n", "x"])
    pd.testing.assert_frame_equal(got, expected[["n", "x"]])


def test_escapes_are_refused(tmp_path: Path, table: pd.DataFrame) -> None:
    root = tmp_path / "root"
    root.mkdir()
    table.to_csv(tmp_path / "secret.csv", index=False)
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    for path in ("../secret.csv", str(tmp_path / "secret.csv"), "link.csv"):
        with pytest.raises((PathEscapeError, ValueError), match=r"secret\.csv|link\.csv"):
            load(root, path=path)


def test_format_inference() -> None:
    assert infer_format("a/b.CSV") == "csv"
    assert infer_format("b.csv.gz") == "csv"
    assert infer_format("b.pq") == "parquet"
    assert infer_format("b.xlsx") == "excel"
    assert infer_format("b.json") is None
    assert infer_format("noext") is None
