"""The ``model_saver`` node type: write a model in its library's native format, with a manifest.

Layout of a saved model (a directory under the artifact root)::

    <path>/model.<format>    the model, as the library writes it (never a pickle)
    <path>/manifest.json     what it is: library and version, task, features, classes, the
                             fitted scaler's attributes, and the model file's SHA-256

:func:`load_model` reads such a directory back into a :class:`~ray_nodes.data.TrainedModel`:
it checks the SHA-256 first and loads through the backend's native loader (skops with
scikit-learn types only, for scikit-learn), so nothing is ever unpickled from a path a client
named.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from ray_nodes.data import FittedScaler, TrainedModel, expect_input, json_scalar, node_result
from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem, ResourceDefaults
from ray_nodes.nodes.trainers import all_formats, get_backend
from ray_nodes.paths import relative_path_problem, resolve_artifact_path

__all__ = [
    "MANIFEST",
    "MANIFEST_VERSION",
    "ModelSaverNode",
    "load_model",
    "save_model",
    "sha256_file",
]

#: The manifest's file name inside a saved model's directory.
MANIFEST = "manifest.json"
#: Bumped when the manifest's meaning changes; :func:`load_model` refuses newer ones.
MANIFEST_VERSION = 1
#: The default directory, relative to the artifact root; ``{...}`` are filled from the run.
DEFAULT_PATH = "models/{pipeline_id}/{run_id}/{node_id}"


def sha256_file(path: Path) -> str:
    """Lowercase hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _raypipe_version() -> str:
    try:
        return metadata.version("raypipe")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_atomically(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)``, then move the result over ``path`` in one step, so a
    reader never sees half a file (and a failed save leaves the old one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(
    model: TrainedModel, directory: Path, fmt: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Write ``model`` and its manifest into ``directory``; returns the manifest.

    Args:
        model: The model.
        directory: Where to write (created if missing).
        fmt: One of the backend's formats; default its native one.
        extra: More manifest entries (run and node ids).

    Raises:
        ValueError: ``fmt`` is not a format of the model's backend.
    """
    backend = get_backend(model.backend)
    fmt = fmt or backend.formats[0]
    if fmt not in backend.formats:
        raise ValueError(
            f"backend {backend.name} saves as {', '.join(backend.formats)}, not {fmt!r}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / f"model.{fmt}"
    _write_atomically(model_path, lambda tmp: backend.save(model, tmp, fmt))
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "backend": backend.name,
        "library": backend.library,
        "library_version": model.library_version or backend.library_version(),
        "raypipe_version": _raypipe_version(),
        "task": model.task,
        "estimator": model.estimator_name,
        "format": fmt,
        "model_file": model_path.name,
        "sha256": sha256_file(model_path),
        "size_bytes": model_path.stat().st_size,
        "feature_names": list(model.feature_names),
        "classes": None if model.classes is None else [json_scalar(c) for c in model.classes],
        "label_encoded": model.label_encoded,
        "target": model.target,
        "hyperparameters": dict(model.hyperparameters),
        "random_state": model.random_state,
        "scaler": None if model.scaler is None else model.scaler.to_dict(),
        "input_example": list(model.input_example),
        "created_time": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    _write_atomically(directory / MANIFEST, lambda tmp: tmp.write_text(text))
    return manifest


def load_model(directory: Path | str) -> TrainedModel:
    """The model saved in ``directory`` by :func:`save_model`.

    Raises:
        ValueError: the manifest is from a newer raypipe, names an unknown backend or format,
            or the model file's SHA-256 does not match it.
    """
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    if int(manifest.get("manifest_version", 0)) > MANIFEST_VERSION:
        raise ValueError(
            f"{directory} was saved by a newer raypipe (manifest {manifest['manifest_version']})"
        )
    backend = get_backend(manifest["backend"])
    fmt = manifest["format"]
    if fmt not in backend.formats:
        raise ValueError(f"{directory}: unknown format {fmt!r} for backend {backend.name}")
    model_path = directory / Path(manifest["model_file"]).name  # never outside the directory
    digest = sha256_file(model_path)
    if digest != manifest["sha256"]:
        raise ValueError(f"{model_path} does not match its manifest (SHA-256 {digest})")
    estimator = backend.load(model_path, fmt, manifest)
    classes = manifest.get("classes")
    scaler = manifest.get("scaler")
    return TrainedModel(
        backend=backend.name,
        task=manifest["task"],
        estimator=estimator,
        feature_names=tuple(manifest["feature_names"]),
        classes=None if classes is None else tuple(classes),
        target=manifest.get("target", ""),
        estimator_name=manifest.get("estimator", ""),
        hyperparameters=manifest.get("hyperparameters") or {},
        random_state=manifest.get("random_state"),
        label_encoded=bool(manifest.get("label_encoded")),
        scaler=None if scaler is None else FittedScaler.from_dict(scaler),
        library_version=manifest.get("library_version", ""),
        input_example=tuple(manifest.get("input_example") or ()),
    )


class ModelSaverNode(NodeType):
    """Save a model in its library's native format, with a manifest, under the artifact root.

    Formats (the first is the default): XGBoost ``json`` or ``ubj``; LightGBM ``txt``;
    CatBoost ``cbm``; scikit-learn ``skops`` (skops rebuilds the model without pickle and,
    when loaded by raypipe, only from scikit-learn, numpy and scipy types). Nothing is ever
    pickled or unpickled.

    The directory gets ``model.<format>`` and ``manifest.json``: backend, library and its
    version, raypipe version, task, estimator class, feature names, class labels, target,
    hyperparameters, seed, the fitted scaler's attributes (if the split was scaled), the
    model file's SHA-256 and size, the run and node, and the creation time (UTC). Files are
    replaced atomically, so a re-run never leaves half a model. ``ray_nodes.nodes.model_saver.
    load_model(directory)`` loads it back (after checking the SHA-256).

    Parameters:
        path (string): the directory, relative to the artifact root; ``..`` out of the root,
            absolute paths and symlinks out of the root are refused. Default
            ``models/<pipeline>/<run id>/<node id>``.
        format (string): one of the model's backend's formats; default its native one.
        register_as (string): where the server records runs in MLflow (docs/tracking.md),
            also register the logged model in the MLflow model registry under this name
            (a new version per run). The node itself does nothing with it.

    Input: a model. Output: nothing; where the model went is in the node's artifacts
    (``model`` and ``manifest``, with URI, size and SHA-256) and notes.

    Example::

        - id: save
          type: model_saver
          depends_on: [train]
          params: {path: "{{ parameters.model_dir }}", format: json}
    """

    type_name: ClassVar[str] = "model_saver"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "minLength": 1,
                "description": "Directory under the artifact root.",
            },
            "format": {"type": "string", "description": "A format of the model's backend."},
            "register_as": {
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "pattern": "^\\S(.*\\S)?$",
                "description": "MLflow registered model name for the logged model.",
            },
        },
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.MODEL,)
    output: ClassVar[ArtifactKind] = ArtifactKind.NONE
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """The path stays under the artifact root; the format is some backend's."""
        problems = []
        if "path" in params:
            problem = relative_path_problem(str(params["path"]))
            if problem is not None:
                problems.append(ParamProblem("path", problem))
        fmt = params.get("format")
        if fmt is not None:
            formats = all_formats()
            if not any(fmt in f for f in formats.values()):
                listed = "; ".join(f"{b}: {', '.join(f)}" for b, f in formats.items())
                problems.append(ParamProblem("format", f"not a model format ({listed})"))
        return problems

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Write the model and its manifest."""
        model: TrainedModel = expect_input(inputs[0], TrainedModel, self.type_name, "a model")
        params = ctx.params
        raw = params.get("path") or DEFAULT_PATH.format(
            pipeline_id=ctx.pipeline_id or "pipeline", run_id=ctx.run_id, node_id=ctx.node_id
        )
        directory = resolve_artifact_path(str(raw), ctx.artifact_root)
        manifest = save_model(
            model, directory, params.get("format"), run_id=ctx.run_id, node_id=ctx.node_id
        )
        model_path = directory / manifest["model_file"]
        manifest_path = directory / MANIFEST
        ctx.notes.append(f"saved {model.backend} model to {directory}")
        metadata = {
            "format": manifest["format"],
            "library": manifest["library"],
            "library_version": manifest["library_version"],
        }
        artifacts = [
            {
                "name": "model",
                "kind": ArtifactKind.MODEL.value,
                "uri": str(model_path),
                "size_bytes": manifest["size_bytes"],
                "sha256": manifest["sha256"],
                "metadata": metadata,
            },
            {
                "name": "manifest",
                "kind": ArtifactKind.MODEL.value,
                "uri": str(manifest_path),
                "size_bytes": manifest_path.stat().st_size,
                "sha256": sha256_file(manifest_path),
                "metadata": {"format": "json"},
            },
        ]
        return node_result(
            None, metrics={"model_size_bytes": float(manifest["size_bytes"])}, artifacts=artifacts
        )
