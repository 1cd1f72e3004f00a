"""The ``lightning`` trainer backend: a feed-forward network (:class:`ray_nodes.ml.TabularNet`)
trained by Lightning through :class:`~ray_nodes.ml.LightningClassifier` /
:class:`~ray_nodes.ml.LightningRegressor`.

torch and Lightning are imported only when a model is built, trained, saved or loaded:
validating a spec on the control plane checks the hyperparameters without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ray_nodes.data import TrainedModel
from ray_nodes.ml import PARAM_NAMES, param_problems
from ray_nodes.node import ParamProblem
from ray_nodes.nodes.trainers import FitResult, TrainContext, TrainerBackend, integral_floats_to_int

__all__ = ["LightningBackend"]

_DEVICE = "set by the node: resources.num_gpus (and gpu_policy) decide GPU or CPU"


def _params(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """Spec values as the estimator takes them: whole floats as ints, lists as tuples."""
    params = integral_floats_to_int(dict(hyperparameters))
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    return params  # type: ignore[no-any-return]


class LightningBackend(TrainerBackend):
    """A feed-forward network trained with Lightning (PyTorch).

    Hyperparameters (all optional): ``hidden_layer_sizes`` (default ``[64, 32]``),
    ``activation`` (``relu``, ``gelu``, ``silu``, ``tanh``, ``elu``, ``leaky_relu``),
    ``batch_norm``, ``dropout``, ``max_epochs`` (100), ``batch_size`` (64),
    ``learning_rate`` (AdamW, 0.001), ``weight_decay``, ``validation_fraction`` (0.1: rows
    held out to keep the best epoch and stop early), ``patience`` (10 epochs).

    The node's seed makes training deterministic on CPU; torch uses as many intra-op
    threads as the node has CPUs. A node with ``resources.num_gpus`` trains on the GPU Ray
    assigned it (device 0 of those Ray made visible); with ``gpu_policy:
    GPU_POLICY_PREFERRED`` on a cluster without GPUs it trains on CPU. Each epoch's
    ``train_loss`` and ``val_loss`` are reported as progress while it trains; the metrics
    hold ``epochs``, ``best_epoch``, the best epoch's losses and ``cuda`` (1 when trained
    on a GPU). Saved as ``pt``: the network's tensors and the estimator's configuration,
    loaded with ``torch.load(weights_only=True)``.
    """

    name: ClassVar[str] = "lightning"
    library: ClassVar[str] = "lightning"
    formats: ClassVar[tuple[str, ...]] = ("pt",)
    reserved: ClassVar[Mapping[str, str]] = {
        "random_state": "use the node's random_state param",
        "num_threads": "set by the node from its CPUs; set resources.num_cpus instead",
        "accelerator": _DEVICE,
        "devices": _DEVICE,
    }

    def known_hyperparameters(self, task: str, estimator: str | None) -> set[str] | None:
        return set(PARAM_NAMES)

    def check(
        self, task: str, estimator: str | None, hyperparameters: Mapping[str, Any]
    ) -> list[ParamProblem]:
        problems = super().check(task, estimator, hyperparameters)
        given = {k: v for k, v in _params(hyperparameters).items() if k not in self.reserved}
        problems += [
            ParamProblem(f"hyperparameters.{key}", message)
            for key, message in sorted(param_problems(given).items())
        ]
        return problems

    def estimator_name(self, task: str, estimator: str | None) -> str:
        return "LightningClassifier" if task == "classification" else "LightningRegressor"

    def make_estimator(
        self,
        task: str,
        hyperparameters: Mapping[str, Any],
        *,
        estimator: str | None,
        random_state: int | None,
        n_threads: int,
        gpu_ids: tuple[int, ...],
    ) -> Any:
        from ray_nodes.ml import estimator_class

        # Ray has set CUDA_VISIBLE_DEVICES to the assigned GPU(s): device 0 is the first.
        return estimator_class(task)(
            **_params(hyperparameters),
            random_state=random_state,
            num_threads=n_threads,
            accelerator="cuda" if gpu_ids else "cpu",
            devices=1,
        )

    def fit(self, estimator: Any, X: Any, y: Any, ctx: TrainContext) -> FitResult:
        from ray_nodes.ml import EpochRecord

        max_epochs = estimator.max_epochs

        def on_epoch(record: EpochRecord) -> None:
            metrics = {"epoch": float(record.epoch), "train_loss": record.train_loss}
            message = f"epoch {record.epoch}/{max_epochs}: train_loss {record.train_loss:.5g}"
            if record.val_loss is not None:
                metrics["val_loss"] = record.val_loss
                message += f", val_loss {record.val_loss:.5g}"
            ctx.report(metrics, message)

        estimator.fit(X, y, on_epoch=on_epoch)
        history = estimator.history_
        best = history[estimator.best_epoch_ - 1] if estimator.best_epoch_ else history[-1]
        metrics = {
            "epochs": float(estimator.n_epochs_),
            "best_epoch": float(estimator.best_epoch_),
            "cuda": 1.0 if str(estimator.device_).startswith("cuda") else 0.0,
            **{k: float(v) for k, v in best.items() if k != "epoch"},
            **{f"last_{k}": float(v) for k, v in history[-1].items() if k != "epoch"},
        }
        return FitResult(estimator, metrics)

    def save(self, model: TrainedModel, path: Path, fmt: str) -> None:
        from ray_nodes.ml import save_estimator

        save_estimator(model.estimator, path)

    def load(self, path: Path, fmt: str, manifest: Mapping[str, Any]) -> Any:
        from ray_nodes.ml import load_estimator

        return load_estimator(path)
