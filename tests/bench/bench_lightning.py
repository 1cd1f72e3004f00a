"""Training throughput of ``LightningClassifier`` against a plain PyTorch loop, same run.

Both train the same :class:`~ray_nodes.ml.TabularNet` on the same generated data (binary
classification, 32 float features) with AdamW, cross-entropy, the same batch size, the same
shuffled batches drawn from in-memory tensors, the same epochs and threads, on the same
device (CUDA when torch sees it, else CPU). The plain loop is what one would write by hand:
``randperm``, slice, forward, backward, step. The estimator's figure is its whole ``fit``
(input validation, building the Trainer, Lightning's loop) with ``validation_fraction=0``,
so both sides see every row every epoch.

Throughput is rows x epochs / seconds, the median of a few repetitions after a warm-up;
the target is a ratio (Lightning / plain) of at least 0.8.

Run with ``python -m tests.bench bench_lightning`` (``make bench`` runs every benchmark).
``RAYPIPE_BENCH_REPEATS`` sets the repetitions (default 3), ``RAYPIPE_BENCH_THREADS``
torch's threads (default: torch's own choice).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import make_classification
from torch.nn import functional as F

from ray_nodes.ml import LightningClassifier, TabularNet
from tests.bench._config import repeats, sized

REPEATS = repeats(3)
ROWS = sized(100_000, 5_000)
FEATURES = 32
EPOCHS = sized(3, 1)
TARGET = 0.8
#: torch's intra-op threads for both sides (0: torch's default).
THREADS = int(os.environ.get("RAYPIPE_BENCH_THREADS", "0"))


@dataclass(frozen=True)
class Case:
    """One configuration measured on both sides."""

    name: str
    hidden: tuple[int, ...]
    batch_size: int


CASES = (
    Case("default net (64, 32), batch 64", (64, 32), 64),
    Case("wider net (256, 128), batch 256", (256, 128), 256),
    Case("wider net (256, 128), batch 1024", (256, 128), 1024),
)


def _data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=ROWS, n_features=FEATURES, n_informative=16, random_state=0
    )
    return X.astype(np.float32), y


def plain_loop(X: np.ndarray, y: np.ndarray, case: Case, device: str, seed: int = 0) -> float:
    """Seconds for a hand-written loop: EPOCHS passes over (X, y)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    features = torch.from_numpy(X).to(device)
    labels = torch.from_numpy(y.astype(np.int64)).to(device)
    net = TabularNet(FEATURES, 2, case.hidden).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(features), case.batch_size):
            batch = order[start : start + case.batch_size]
            loss = F.cross_entropy(net(features[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def lightning_fit(X: np.ndarray, y: np.ndarray, case: Case, device: str) -> float:
    """Seconds for ``LightningClassifier.fit`` with the same settings."""
    estimator = LightningClassifier(
        hidden_layer_sizes=case.hidden,
        batch_size=case.batch_size,
        max_epochs=EPOCHS,
        validation_fraction=0.0,
        random_state=0,
        accelerator="cuda" if device.startswith("cuda") else "cpu",
        devices=1,
    )
    started = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - started


def _compare(X: np.ndarray, y: np.ndarray, case: Case, device: str) -> tuple[float, float]:
    """Median seconds of (plain, Lightning), the two alternating so that a busy moment of a
    shared machine falls on both alike; after one warm-up each."""
    plain_loop(X, y, case, device)
    lightning_fit(X, y, case, device)
    plain, ours = [], []
    for _ in range(REPEATS):
        plain.append(plain_loop(X, y, case, device))
        ours.append(lightning_fit(X, y, case, device))
    return statistics.median(plain), statistics.median(ours)


def main() -> None:
    warnings.filterwarnings("ignore")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(THREADS or torch.get_num_threads())
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"{os.cpu_count()} CPUs"
    print(
        f"{ROWS:,} rows x {FEATURES} features, {EPOCHS} epochs, {device} ({where}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {REPEATS}"
    )
    X, y = _data()
    print(f"{'case':36} {'plain rows/s':>13} {'Lightning rows/s':>17} {'ratio':>6}  target")
    for case in CASES:
        plain_s, ours_s = _compare(X, y, case, device)
        plain, ours = ROWS * EPOCHS / plain_s, ROWS * EPOCHS / ours_s
        print(f"{case.name:36} {plain:13,.0f} {ours:17,.0f} {ours / plain:6.2f}  >= {TARGET}")


if __name__ == "__main__":
    main()
