"""What runs inside Ray: node types, the DAG -> task-graph compiler and the run supervisor.

This package never imports ``control_plane`` or gRPC server code; it reports back through the
interfaces the control plane gives it.

The built-in node types moved to :mod:`ray_nodes.nodes` (``ray_nodes.model_saver`` is now
``ray_nodes.nodes.model_saver``, and so on). The old import paths keep working for now, with a
DeprecationWarning: a finder below aliases each to its new module, imported only when asked
for. What custom node types build on (:mod:`ray_nodes.node`, :mod:`ray_nodes.data`) did not
move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

#: Old module -> where it lives now.
MOVED_MODULES = {
    f"ray_nodes.{name}": f"ray_nodes.nodes.{name}"
    for name in (
        "data_loader",
        "data_preprocessor",
        "feature_scaler",
        "model_evaluator",
        "model_saver",
        "model_trainer",
        "noop",
        "train_test_split",
        "trainers",
    )
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module's new home under its old name, warning once per import."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the new module ran when it was imported


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
