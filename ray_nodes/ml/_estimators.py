"""``LightningClassifier`` and ``LightningRegressor``: scikit-learn estimators that train a
:class:`~ray_nodes.ml.TabularNet` with Lightning."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ray_nodes.ml._device import device_report, resolve_placement
from ray_nodes.ml._net import TabularNet
from ray_nodes.ml._params import DEFAULTS, param_problems
from ray_nodes.ml._training import EpochRecord, TrainSettings, train

__all__ = ["LightningClassifier", "LightningRegressor", "TabularEstimator"]

#: Fewer rows than this train without a validation set (and without early stopping).
MIN_ROWS_FOR_VALIDATION = 20
#: Rows per forward pass when predicting.
PREDICT_BATCH = 65536


class TabularEstimator(BaseEstimator):
    """What the classifier and the regressor share; see :class:`LightningClassifier` for
    the parameters."""

    _task: ClassVar[str]

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = DEFAULTS["hidden_layer_sizes"],
        activation: str = DEFAULTS["activation"],
        batch_norm: bool = DEFAULTS["batch_norm"],
        dropout: float = DEFAULTS["dropout"],
        max_epochs: int = DEFAULTS["max_epochs"],
        batch_size: int = DEFAULTS["batch_size"],
        learning_rate: float = DEFAULTS["learning_rate"],
        weight_decay: float = DEFAULTS["weight_decay"],
        validation_fraction: float = DEFAULTS["validation_fraction"],
        patience: int = DEFAULTS["patience"],
        random_state: int | np.random.RandomState | None = DEFAULTS["random_state"],
        accelerator: str = DEFAULTS["accelerator"],
        devices: int | str | Sequence[int] = DEFAULTS["devices"],
        num_threads: int | None = DEFAULTS["num_threads"],
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.num_threads = num_threads

    # -- what the subclasses define -------------------------------------------------------
    def _targets(self, y: np.ndarray) -> tuple[torch.Tensor, int, np.ndarray | None]:
        """``(training targets, outputs of the network, labels to stratify by)``."""
        raise NotImplementedError

    # -- fitting ----------------------------------------------------------------------------
    def _check_params(self) -> None:
        problems = param_problems(self.get_params())
        if problems:
            raise ValueError(
                "; ".join(f"{type(self).__name__}.{k} {v}" for k, v in sorted(problems.items()))
            )

    def fit(
        self, X: Any, y: Any, *, on_epoch: Callable[[EpochRecord], None] | None = None
    ) -> TabularEstimator:
        """Train a new network on ``(X, y)``.

        Args:
            X: Features, shape ``(rows, features)``.
            y: Class labels or target values.
            on_epoch: Called after each epoch with its losses (progress reporting).

        Returns:
            self
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=self._task == "regression")
        targets, n_outputs, strata = self._targets(y)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        placement = resolve_placement(self.accelerator, self.devices)
        features = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        train_idx, val_idx = self._holdout(len(features), strata, seed)
        validation = None
        if val_idx is not None:
            validation = (features[val_idx], targets[val_idx])
            features, targets = features[train_idx], targets[train_idx]
        if self.batch_norm and len(features) < 2:
            raise ValueError("batch_norm=True cannot train on 1 sample: it needs at least 2 rows")
        settings = TrainSettings(
            task=self._task,
            max_epochs=int(self.max_epochs),
            batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            patience=int(self.patience),
            placement=placement,
            seed=seed,
        )
        previous_threads = torch.get_num_threads()
        cuda = [] if placement.accelerator == "cpu" else [torch.device(placement.torch_device)]
        try:
            if self.num_threads is not None:
                torch.set_num_threads(int(self.num_threads))
            # The seed drives initialization and dropout here, and the batch order through
            # the sampler's own generator; the caller's global RNG state is left as it was.
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                net = TabularNet(
                    features.shape[1],
                    n_outputs,
                    tuple(self.hidden_layer_sizes),
                    activation=self.activation,
                    batch_norm=bool(self.batch_norm),
                    dropout=float(self.dropout),
                )
                module = train(
                    net,
                    features,
                    targets,
                    validation,
                    settings,
                    drop_single=bool(self.batch_norm),
                    on_epoch=on_epoch,
                )
        finally:
            torch.set_num_threads(previous_threads)
        self.device_ = module.trained_on
        self.device_info_ = device_report(placement)
        self.history_ = [
            {"epoch": float(r.epoch), "train_loss": r.train_loss}
            | ({} if r.val_loss is None else {"val_loss": r.val_loss})
            for r in module.history
        ]
        self.n_epochs_ = len(module.history)
        self.best_epoch_ = module.best_epoch
        self.model_ = net.cpu().eval()
        return self

    def _holdout(
        self, n: int, strata: np.ndarray | None, seed: int
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Row indices of the training and validation parts, or ``(None, None)`` when the
        estimator trains on every row."""
        fraction = float(self.validation_fraction)
        if fraction <= 0 or n < MIN_ROWS_FOR_VALIDATION:
            return None, None
        rows = np.arange(n)
        try:
            train_idx, val_idx = train_test_split(
                rows, test_size=fraction, random_state=seed, stratify=strata
            )
        except ValueError:  # a class too small to stratify
            train_idx, val_idx = train_test_split(rows, test_size=fraction, random_state=seed)
        return np.sort(train_idx), np.sort(val_idx)

    # -- predicting -------------------------------------------------------------------------
    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs for the rows of ``X`` (on CPU, in evaluation mode)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        features = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        with torch.inference_mode():
            parts = [
                self.model_(features[i : i + PREDICT_BATCH]).double().numpy()
                for i in range(0, len(features), PREDICT_BATCH)
            ]
        return np.concatenate(parts) if parts else np.empty((0, 1))


class LightningClassifier(ClassifierMixin, TabularEstimator):
    """A feed-forward network classifier trained by Lightning, with scikit-learn's API.

    Args:
        hidden_layer_sizes: Width of each hidden layer of the :class:`TabularNet`.
        activation: ``relu``, ``gelu``, ``silu``, ``tanh``, ``elu`` or ``leaky_relu``.
        batch_norm: Batch normalization in each hidden layer.
        dropout: Dropout probability after each hidden layer.
        max_epochs: Most passes over the training rows.
        batch_size: Rows per optimizer step.
        learning_rate: AdamW's learning rate.
        weight_decay: AdamW's (decoupled) weight decay.
        validation_fraction: Share of the rows held out (stratified by class) to pick the
            best epoch and stop early; 0 trains on every row for ``max_epochs``. Data with
            fewer than 20 rows is never split.
        patience: Epochs without a better validation loss before training stops.
        random_state: Seed of initialization, dropout, batch order and the hold-out split;
            a fixed seed gives identical models on CPU. None: a fresh seed per fit.
        accelerator: ``auto`` (CUDA when available and assigned: inside a Ray task, only
            when Ray assigned a GPU), ``cpu``, ``gpu`` or ``cuda``.
        devices: ``auto``, 1 or ``[index]``: the one device to train on.
        num_threads: torch's intra-op threads during ``fit`` (None: leave torch's setting).

    Attributes:
        classes_: The class labels, sorted.
        n_features_in_: Features seen in ``fit``.
        model_: The trained :class:`TabularNet`, on CPU in evaluation mode.
        history_: Per epoch: ``epoch``, ``train_loss`` and (with validation) ``val_loss``.
        n_epochs_: Epochs trained. best_epoch_: The epoch whose weights were kept.
        device_: The device the parameters were trained on (``cpu``, ``cuda:0``).
        device_info_: Where the fit ran: ``device``, ``device_name`` (CUDA), ``reason``,
            ``cuda_visible_devices``, ``ray_gpu_ids`` (None outside Ray).
    """

    _task: ClassVar[str] = "classification"

    def _targets(self, y: np.ndarray) -> tuple[torch.Tensor, int, np.ndarray | None]:
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {self.classes_[0]!r}"
            )
        return torch.from_numpy(codes.astype(np.int64)), len(self.classes_), codes

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``."""
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        outputs = self._outputs(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(outputs, axis=1)]  # type: ignore[no-any-return]


class LightningRegressor(RegressorMixin, TabularEstimator):
    """A feed-forward network regressor trained by Lightning, with scikit-learn's API.

    Parameters as :class:`LightningClassifier` (the hold-out is not stratified). The
    network fits the target standardized (mean 0, variance 1), so the reported losses are
    mean squared errors in units of the target's variance.

    Attributes:
        n_features_in_, model_, history_, n_epochs_, best_epoch_, device_, device_info_: as
            for the classifier.
        y_mean_, y_scale_: The standardization of the target.
    """

    _task: ClassVar[str] = "regression"

    def _targets(self, y: np.ndarray) -> tuple[torch.Tensor, int, np.ndarray | None]:
        y = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(y.mean())
        scale = float(y.std())
        self.y_scale_ = scale if scale > 0 and np.isfinite(scale) else 1.0
        scaled = ((y - self.y_mean_) / self.y_scale_).astype(np.float32)
        return torch.from_numpy(scaled), 1, None

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, shape ``(rows,)``."""
        return self._outputs(X)[:, 0] * self.y_scale_ + self.y_mean_  # type: ignore[no-any-return]


def estimator_class(task: str) -> type[TabularEstimator]:
    """The estimator of ``task`` (``classification`` or ``regression``)."""
    return LightningClassifier if task == "classification" else LightningRegressor


def params_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor params from a saved configuration, defaults for missing ones."""
    params = {k: config.get(k, v) for k, v in DEFAULTS.items()}
    params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    return params
