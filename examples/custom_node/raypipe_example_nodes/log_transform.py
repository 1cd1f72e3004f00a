"""The ``log_transform`` node type: replace columns of a dataset by their logarithm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem, ResourceDefaults

__all__ = ["LogTransformNode"]

_LOGS = {"e": np.log, "2": np.log2, "10": np.log10}


class LogTransformNode(NodeType):
    """Replace numeric columns by ``log(x + offset)``, to tame right-skewed features.

    Parameters:
        columns (list of strings, required): the columns to transform.
        base (``e`` | ``2`` | ``10``, default ``e``): the logarithm's base.
        offset (number >= 0, default 1): added before the logarithm, so that zeros stay
            finite (``offset: 1`` with base ``e`` is ``numpy.log1p``).
        suffix (string): write ``<column><suffix>`` next to each column instead of replacing
            it. A new name may not be one of ``columns``.

    Input: a dataset. Output: the dataset with the columns transformed (as float64); the
    other columns are shared with the input, not copied. A value at or below ``-offset``
    fails the node with the column's name rather than producing ``-inf`` or NaN.

    Example::

        - id: log_income
          type: log_transform
          depends_on: [load]
          params: {columns: [income], base: "10"}
    """

    type_name: ClassVar[str] = "log_transform"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "columns": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "uniqueItems": True,
            },
            "base": {"enum": list(_LOGS), "default": "e"},
            "offset": {"type": "number", "minimum": 0, "default": 1},
            "suffix": {"type": "string", "minLength": 1},
        },
        "required": ["columns"],
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.DATASET,)
    output: ClassVar[ArtifactKind] = ArtifactKind.DATASET
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """A rule the schema cannot express: with a suffix, no new column may overwrite a
        column that is itself being transformed."""
        suffix = params.get("suffix")
        if suffix is None:
            return []
        columns = list(params["columns"])
        return [
            ParamProblem(f"columns[{i}]", f"{name + suffix!r} would overwrite a listed column")
            for i, name in enumerate(columns)
            if name + suffix in columns
        ]

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Transform the columns; fail on values the logarithm cannot take."""
        frame = inputs[0]
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"log_transform needs a dataset, got {type(frame).__name__}")
        params = ctx.params
        log = _LOGS[str(params.get("base", "e"))]
        offset = float(params.get("offset", 1))
        out = frame.copy(deep=False)
        for name in params["columns"]:
            if name not in frame.columns:
                raise KeyError(f"log_transform: no column {name!r}")
            values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan) + offset
            if (values <= 0).any():
                raise ValueError(f"log_transform: column {name!r} has values <= -{offset}")
            out[name + params.get("suffix", "")] = log(values)
        return out
