"""The Lightning side of the estimators: the LightningModule around a :class:`TabularNet`,
fast batching of in-memory tensors, and one quiet ``Trainer.fit``."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from ray_nodes.ml._device import Placement

__all__ = ["EpochRecord", "TabularModule", "TrainSettings", "train"]

#: Loggers whose INFO lines (device banners, tips) a fit silences; warnings still show.
_CHATTY_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
)


#: Rows per Lightning step (rounded up to whole batches): enough batches per step that
#: Lightning's per-step overhead (about 0.25 ms on a CPU) stays small next to the work.
CHUNK_ROWS = 2048


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's mean losses (``val_loss`` None without a validation set)."""

    epoch: int
    train_loss: float
    val_loss: float | None


@dataclass(frozen=True)
class TrainSettings:
    """What :func:`train` needs besides the network and the data."""

    task: str
    max_epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    placement: Placement
    seed: int


class _Rows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows of two tensors, fetched a whole batch of indices at a time."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[index], self.y[index]


class _Chunks(Sampler[torch.Tensor]):
    """Index tensors of up to ``size`` rows each, in an order shuffled by a seeded generator
    (so that a seed gives the same batches every time), or in order."""

    def __init__(self, n: int, size: int, *, shuffle: bool, seed: int) -> None:
        self.n, self.size, self.shuffle = n, size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = (
            torch.randperm(self.n, generator=self.generator)
            if self.shuffle
            else torch.arange(self.n)
        )
        yield from order.split(self.size)

    def __len__(self) -> int:
        return -(-self.n // self.size)


def _loader(
    X: torch.Tensor, y: torch.Tensor, size: int, *, shuffle: bool, seed: int
) -> DataLoader[Any]:
    # batch_size=None: the sampler yields whole chunks and the dataset indexes tensors with
    # them, instead of collating rows one by one.
    sampler = _Chunks(len(X), size, shuffle=shuffle, seed=seed)
    return DataLoader(_Rows(X, y), sampler=sampler, batch_size=None)


class TabularModule(L.LightningModule):
    """Trains a network with AdamW; tracks each epoch's mean losses, keeps the weights of the
    best validation epoch and stops after ``patience`` epochs without improvement."""

    def __init__(
        self,
        net: nn.Module,
        settings: TrainSettings,
        *,
        validate: bool,
        drop_single: bool = False,
        on_epoch: Callable[[EpochRecord], None] | None = None,
    ) -> None:
        super().__init__()
        # Each Lightning step takes a chunk of several batches and makes one optimizer step
        # per batch (as Keras' steps_per_execution): the same updates as one batch per
        # Lightning step, with Lightning's per-step work spread over the chunk.
        self.automatic_optimization = False
        self.net = net
        self.settings = settings
        self.validate = validate
        self.drop_single = drop_single
        self.on_epoch = on_epoch
        self.history: list[EpochRecord] = []
        self.best_epoch = 0
        self.best_loss = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._rows = {"train": 0, "val": 0}
        #: The device the parameters trained on (Lightning moves them back to CPU after).
        self.trained_on = "cpu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.settings.task == "classification":
            return F.cross_entropy(out, y)
        return F.mse_loss(out[:, 0], y)

    def _add(self, stage: str, loss: torch.Tensor, rows: int) -> None:
        # Summed on the device and read once per epoch: no host sync per step.
        self._loss_sums[stage] = self._loss_sums[stage] + loss.detach() * rows
        self._rows[stage] += rows

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        optimizer = self.optimizers()
        x, y = batch
        for xb, yb in zip(
            x.split(self.settings.batch_size), y.split(self.settings.batch_size), strict=True
        ):
            if len(yb) == 1 and self.drop_single:
                continue  # batch normalization cannot train on one row (only ever the last)
            loss = self._loss(xb, yb)
            optimizer.zero_grad()  # type: ignore[union-attr]
            self.manual_backward(loss)
            optimizer.step()  # type: ignore[union-attr]
            self._add("train", loss, len(yb))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._add("val", self._loss(x, y), len(y))

    def on_train_start(self) -> None:
        self.trained_on = str(next(self.net.parameters()).device)

    def on_train_epoch_start(self) -> None:
        self._loss_sums["train"] = torch.zeros((), device=self.device)
        self._rows["train"] = 0

    def on_validation_epoch_start(self) -> None:
        self._loss_sums["val"] = torch.zeros((), device=self.device)
        self._rows["val"] = 0

    def on_train_epoch_end(self) -> None:
        """Record the epoch (validation has run by now), keep the best weights, stop early."""
        epoch = self.current_epoch + 1
        train_loss = float(self._loss_sums["train"]) / max(self._rows["train"], 1)
        val_loss = None
        if self.validate:
            val_loss = float(self._loss_sums["val"]) / max(self._rows["val"], 1)
        record = EpochRecord(epoch, train_loss, val_loss)
        self.history.append(record)
        if val_loss is not None:
            if val_loss < self.best_loss:
                self.best_loss, self.best_epoch = val_loss, epoch
                self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            elif epoch - self.best_epoch >= self.settings.patience:
                self.trainer.should_stop = True
        else:
            self.best_loss, self.best_epoch = train_loss, epoch
        if self.on_epoch is not None:
            self.on_epoch(record)

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(
            self.net.parameters(),
            lr=self.settings.learning_rate,
            weight_decay=self.settings.weight_decay,
        )


@contextmanager
def quiet() -> Iterator[None]:
    """Silence Lightning's banners and tips ("GPU available: ...") and its hints about
    dataloader workers (the data is in memory) for the duration of a fit."""
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PossibleUserWarning)
            # Lightning 2.6 calls an API that torch >= 2.9 deprecates, once per fit.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def train(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    validation: tuple[torch.Tensor, torch.Tensor] | None,
    settings: TrainSettings,
    *,
    drop_single: bool,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TabularModule:
    """Fit ``net`` on ``(X, y)`` with one Lightning ``Trainer`` and return the module (its
    history, best epoch); ``net`` ends with the best validation epoch's weights."""
    placement = settings.placement
    device = torch.device(placement.torch_device)
    # The data is small next to the network's work: move it once, not batch by batch.
    X, y = X.to(device), y.to(device)
    module = TabularModule(
        net,
        settings,
        validate=validation is not None,
        drop_single=drop_single,
        on_epoch=on_epoch,
    )
    chunk = settings.batch_size * max(1, -(-CHUNK_ROWS // settings.batch_size))
    train_loader = _loader(X, y, chunk, shuffle=True, seed=settings.seed)
    val_loader = None
    if validation is not None:
        Xv, yv = (t.to(device) for t in validation)
        val_loader = _loader(Xv, yv, max(chunk, 4096), shuffle=False, seed=0)
    with quiet():
        trainer = L.Trainer(
            accelerator=placement.accelerator,
            devices=placement.devices,
            max_epochs=settings.max_epochs,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,  # the best epoch's weights are kept in memory
            num_sanity_val_steps=0,
            deterministic=False,
        )
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if module.best_state is not None:
        net.load_state_dict(module.best_state)
    return module
