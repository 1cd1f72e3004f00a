"""The ``data_loader`` node type: read a CSV, Parquet or Excel file into a dataset."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from ray_nodes.data import Dataset, node_result
from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem, ResourceDefaults
from ray_nodes.paths import data_path_problem, resolve_data_path

__all__ = ["FORMATS", "READER_OPTIONS", "DataLoaderNode", "infer_format"]

#: File formats and the extensions that imply them (compressed CSVs keep their inner suffix).
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".tsv", ".txt"),
    "parquet": (".parquet", ".pq"),
    "excel": (".xlsx", ".xlsm", ".xls"),
}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_UINT = {"type": "integer", "minimum": 0}
_STRS = {"type": "array", "items": {"type": "string"}}
_DTYPE = {
    "oneOf": [_STR, {"type": "object", "additionalProperties": {"type": "string"}}],
    "description": "a dtype name, or column -> dtype name",
}
_NA = {"oneOf": [_STR, _STRS, {"type": "object", "additionalProperties": _STRS}]}
_HEADER = {
    "oneOf": [_UINT, {"type": "array", "items": _UINT}, {"const": "infer"}, {"type": "null"}]
}
_INDEX_COL = {
    "oneOf": [_UINT, _STR, {"const": False}, {"type": "null"}, {"type": "array", "items": _STR}]
}
_DATES = {"oneOf": [_BOOL, _STRS]}
_DATE_FORMAT = {"oneOf": [_STR, {"type": "object", "additionalProperties": _STR}]}
_SKIPROWS = {"oneOf": [_UINT, {"type": "array", "items": _UINT}]}
_BACKEND = {"enum": ["numpy_nullable", "pyarrow"]}

#: Reader option -> (its JSON Schema, the formats whose reader takes it). Only these options
#: are accepted: nothing that names another file or file system (``storage_options``,
#: ``filesystem``), changes what the reader returns (``chunksize``, ``iterator``, a list of
#: sheets) or needs a Python callable. Column selection is the ``columns`` param.
READER_OPTIONS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "sep": (_STR, ("csv",)),
    "delimiter": (_STR, ("csv",)),
    "header": (_HEADER, ("csv", "excel")),
    "names": (_STRS, ("csv", "excel")),
    "index_col": (_INDEX_COL, ("csv", "excel")),
    "dtype": (_DTYPE, ("csv", "excel")),
    "true_values": (_STRS, ("csv", "excel")),
    "false_values": (_STRS, ("csv", "excel")),
    "skipinitialspace": (_BOOL, ("csv",)),
    "skiprows": (_SKIPROWS, ("csv", "excel")),
    "skipfooter": (_UINT, ("csv", "excel")),
    "nrows": (_UINT, ("csv", "excel")),
    "na_values": (_NA, ("csv", "excel")),
    "keep_default_na": (_BOOL, ("csv", "excel")),
    "na_filter": (_BOOL, ("csv", "excel")),
    "skip_blank_lines": (_BOOL, ("csv",)),
    "parse_dates": (_DATES, ("csv", "excel")),
    "date_format": (_DATE_FORMAT, ("csv", "excel")),
    "dayfirst": (_BOOL, ("csv",)),
    "compression": (
        {"enum": ["infer", "gzip", "bz2", "zip", "xz", "zstd", "tar", None]},
        ("csv",),
    ),
    "thousands": (_STR, ("csv", "excel")),
    "decimal": (_STR, ("csv", "excel")),
    "lineterminator": (_STR, ("csv",)),
    "quotechar": (_STR, ("csv",)),
    "quoting": ({"enum": [0, 1, 2, 3]}, ("csv",)),
    "doublequote": (_BOOL, ("csv",)),
    "escapechar": (_STR, ("csv",)),
    "comment": (_STR, ("csv", "excel")),
    "encoding": (_STR, ("csv",)),
    "encoding_errors": (_STR, ("csv",)),
    "on_bad_lines": ({"enum": ["error", "warn", "skip"]}, ("csv",)),
    "low_memory": (_BOOL, ("csv",)),
    "memory_map": (_BOOL, ("csv",)),
    "float_precision": ({"enum": ["high", "legacy", "round_trip", None]}, ("csv",)),
    "engine": (
        {"enum": ["c", "python", "pyarrow", "openpyxl"]},
        ("csv", "excel", "parquet"),
    ),
    "sheet_name": ({"oneOf": [_STR, _UINT]}, ("excel",)),
    "filters": ({"type": "array", "items": {"type": "array"}}, ("parquet",)),
    "dtype_backend": (_BACKEND, ("csv", "excel", "parquet")),
}
_ENGINES = {"csv": ("c", "python", "pyarrow"), "excel": ("openpyxl",), "parquet": ("pyarrow",)}
# The options that pandas' pyarrow CSV engine handles exactly as the C engine does. With any
# other option the C engine reads the file.
_PYARROW_CSV_OPTIONS = frozenset(
    {"sep", "delimiter", "dtype", "na_values", "keep_default_na", "encoding", "quotechar",
     "compression", "dtype_backend"}
)  # fmt: skip
_REFUSED_HINTS = {
    "usecols": "use the node's columns param",
    "columns": "use the node's columns param",
    "filepath_or_buffer": "use the node's path param",
    "io": "use the node's path param",
    "path": "use the node's path param",
    "storage_options": "the loader reads only files under the server's data roots",
    "filesystem": "the loader reads only files under the server's data roots",
    "chunksize": "the loader returns one dataset",
    "iterator": "the loader returns one dataset",
    "converters": "Python callables cannot be given in a spec",
}


def _inner_suffix(path: str) -> str:
    """The lower-case suffix under any compression suffix (``a.tsv.gz`` -> ``.tsv``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def infer_format(path: str) -> str | None:
    """The format a file name implies (``data.csv.gz`` -> ``csv``), or None."""
    suffix = _inner_suffix(path)
    return next((name for name, exts in FORMATS.items() if suffix in exts), None)


class DataLoaderNode(NodeType):
    """Read one file into a dataset (a pandas DataFrame).

    Parameters:
        path (string, required): the file to read. A relative path is looked up under each
            data root in turn (``raypipe serve --data-root``, default: the server's working
            directory); an absolute path must lie under one. Paths that leave every root
            (``..``, an absolute path elsewhere, a symlink that points out) are refused.
        format (``csv`` | ``parquet`` | ``excel``): default from the extension: ``.csv``,
            ``.tsv``, ``.txt`` (also compressed, as ``.csv.gz``), ``.parquet``, ``.pq``,
            ``.xlsx``, ``.xlsm``, ``.xls``. A ``.tsv`` file is tab-separated unless
            ``options.sep`` says otherwise.
        columns (list of strings): read only these columns, in this order. An unknown name
            fails the node with the list of the file's columns.
        options (object): passed to ``pandas.read_csv``, ``read_parquet`` or ``read_excel``.
            Accepted: ``sep``, ``delimiter``, ``header``, ``names``, ``index_col``, ``dtype``,
            ``true_values``, ``false_values``, ``skipinitialspace``, ``skiprows``,
            ``skipfooter``, ``nrows``, ``na_values``, ``keep_default_na``, ``na_filter``,
            ``skip_blank_lines``, ``parse_dates``, ``date_format``, ``dayfirst``,
            ``compression``, ``thousands``, ``decimal``, ``lineterminator``, ``quotechar``,
            ``quoting``, ``doublequote``, ``escapechar``, ``comment``, ``encoding``,
            ``encoding_errors``, ``on_bad_lines``, ``low_memory``, ``memory_map``,
            ``float_precision``, ``engine``, ``sheet_name`` (Excel: one sheet),
            ``filters`` (Parquet) and ``dtype_backend``, each where that reader takes it.
            Options that would read other files or return something other than one table
            (``storage_options``, ``chunksize``, ...) are refused at validation.

    Output: a dataset. On a node with several CPUs (``resources.num_cpus``), CSV files are
    read with pandas' multi-threaded pyarrow engine, one thread per CPU, when the options
    allow it and the result has the types the default C engine would give (numbers,
    booleans, strings); otherwise (one CPU, where the C engine is faster, or when pyarrow
    sees dates in a column the C engine leaves as text) with the C engine. Parquet is read through Arrow. The frame is
    numpy-backed unless ``dtype_backend`` asks for Arrow, so it passes between nodes through
    Ray's object store without copies.

    Metrics: ``rows_out``, ``columns_out``, ``bytes_out`` (in memory, shallow),
    ``read_seconds``.

    Example::

        - id: load
          type: data_loader
          params: {path: sales/2024.csv, columns: [region, units, price], options: {sep: ";"}}
    """

    type_name: ClassVar[str] = "data_loader"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "minLength": 1,
                "description": "The file to read, under a data root.",
            },
            "format": {
                "enum": list(FORMATS),
                "description": "The file format; default from the extension.",
            },
            "columns": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "uniqueItems": True,
                "description": "Columns to read, in this order; default all.",
            },
            "options": {
                "type": "object",
                "properties": {name: schema for name, (schema, _) in READER_OPTIONS.items()},
                "description": "Options for the pandas reader.",
            },
        },
        "required": ["path"],
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = ()
    output: ClassVar[ArtifactKind] = ArtifactKind.DATASET
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """The path's shape, a format the extension cannot tell, options of another reader."""
        problems: list[ParamProblem] = []
        path = str(params["path"])
        problem = data_path_problem(path)
        if problem is not None:
            problems.append(ParamProblem("path", problem))
        fmt = params.get("format") or infer_format(path)
        if fmt is None:
            problems.append(
                ParamProblem(
                    "format",
                    f"cannot tell the format of {path!r} from its extension; "
                    f"set format to one of {', '.join(FORMATS)}",
                )
            )
        for key, value in (params.get("options") or {}).items():
            where = f"options.{key}"
            if key not in READER_OPTIONS:
                hint = _REFUSED_HINTS.get(key)
                problems.append(
                    ParamProblem(
                        where, f"not accepted: {hint}" if hint else "not an accepted reader option"
                    )
                )
                continue
            formats = READER_OPTIONS[key][1]
            if fmt is not None and fmt not in formats:
                problems.append(ParamProblem(where, f"not an option of the {fmt} reader"))
            elif key == "engine" and fmt is not None and value not in _ENGINES[fmt]:
                problems.append(
                    ParamProblem(where, f"the {fmt} reader's engines are {list(_ENGINES[fmt])}")
                )
        return problems

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Resolve the path under the data roots and read the file."""
        params = ctx.params
        raw_path = str(params["path"])
        problems = self.check_params(params)
        if problems:
            raise ValueError("; ".join(f"params.{p.path}: {p.description}" for p in problems))
        path = resolve_data_path(raw_path, ctx.data_roots)
        fmt = params.get("format") or infer_format(raw_path)
        columns = list(params["columns"]) if params.get("columns") else None
        options = dict(params.get("options") or {})
        started = time.perf_counter()
        if fmt == "csv":
            frame = _read_csv(path, columns, options, max(1, int(ctx.num_cpus)))
        elif fmt == "parquet":
            frame = _read_parquet(path, columns, options)
        else:
            frame = _read_excel(path, columns, options)
        seconds = time.perf_counter() - started
        metrics = {
            "rows_out": float(len(frame)),
            "columns_out": float(frame.shape[1]),
            "bytes_out": float(frame.memory_usage(index=True, deep=False).sum()),
            "read_seconds": seconds,
        }
        return node_result(frame, metrics=metrics)


def _unknown_columns(path: Path, wanted: Sequence[str], available: Sequence[Any]) -> KeyError:
    names = [str(c) for c in available]
    missing = [c for c in wanted if c not in names]
    return KeyError(f"{path.name} has no column(s) {missing}; its columns are {names}")


def _select(frame: Dataset, columns: list[str] | None) -> Dataset:
    if columns is None or list(frame.columns) == columns:
        return frame
    return frame[columns]


def _read_csv(
    path: Path, columns: list[str] | None, options: dict[str, Any], threads: int = 1
) -> Dataset:
    if _inner_suffix(path.name) == ".tsv" and not {"sep", "delimiter"} & set(options):
        options["sep"] = "\t"
    header = pd.read_csv(path, nrows=0, **_without(options, "nrows", "skipfooter", "engine"))
    if columns is not None:
        if any(c not in header.columns for c in columns):
            raise _unknown_columns(path, columns, header.columns)
        options["usecols"] = columns
    engine = options.pop("engine", None)
    if engine is None and threads > 1 and set(options) - {"usecols"} <= _PYARROW_CSV_OPTIONS:
        import pyarrow

        # One thread per CPU of the node; Arrow would otherwise size its pool from
        # OMP_NUM_THREADS, which Ray sets per worker process, not per task.
        pyarrow.set_cpu_count(threads)
        frame = pd.read_csv(path, engine="pyarrow", **options)
        if _same_types_as_c_engine(frame):
            return _select(frame, columns)
        del frame
    frame = pd.read_csv(path, engine=engine or "c", **options)
    return _select(frame, columns)


def _without(options: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in keys}


def _same_types_as_c_engine(frame: Dataset) -> bool:
    """Whether pyarrow gave only the kinds of columns the C engine gives for the same text.

    pyarrow infers dates and times (which the C engine leaves as text) and gives object
    columns of ``None`` for empty or date columns; numbers, booleans and strings agree.
    """
    for dtype in frame.dtypes:
        if isinstance(dtype, pd.CategoricalDtype):
            continue
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
            return False
    return True


def _read_parquet(path: Path, columns: list[str] | None, options: dict[str, Any]) -> Dataset:
    import pyarrow.parquet as pq

    if columns is not None:
        available = pq.read_schema(path).names
        if any(c not in available for c in columns):
            raise _unknown_columns(path, columns, available)
    options.pop("engine", None)
    filters = options.pop("filters", None)
    if filters is not None:
        # JSON has no tuples; pyarrow wants [(column, op, value), ...] or a list of such lists.
        filters = [
            [tuple(f) for f in group] if group and isinstance(group[0], list) else tuple(group)
            for group in filters
        ]
    return pd.read_parquet(path, engine="pyarrow", columns=columns, filters=filters, **options)


def _read_excel(path: Path, columns: list[str] | None, options: dict[str, Any]) -> Dataset:
    options.setdefault("engine", "openpyxl" if path.suffix.lower() != ".xls" else None)
    frame = pd.read_excel(path, **options)
    if columns is not None and any(c not in frame.columns for c in columns):
        raise _unknown_columns(path, columns, frame.columns)
    return _select(frame, columns)
