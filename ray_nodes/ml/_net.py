"""``TabularNet``: a configurable feed-forward network for tabular data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ray_nodes.ml._params import ACTIVATIONS

__all__ = ["TabularNet"]


class TabularNet(nn.Module):
    """A multi-layer perceptron: per hidden layer ``Linear -> [BatchNorm1d] -> activation ->
    [Dropout]``, then a linear output layer.

    Args:
        n_features: Input width.
        n_outputs: Output width (classes for a classifier's logits, 1 for a regressor).
        hidden_layer_sizes: Width of each hidden layer; empty gives a linear model.
        activation: ``relu``, ``gelu``, ``silu``, ``tanh``, ``elu`` or ``leaky_relu``.
        batch_norm: Whether each hidden layer normalizes its pre-activations.
        dropout: Dropout probability after each hidden layer (0 for none).
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_layer_sizes: Sequence[int] = (64, 32),
        *,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden_layer_sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(getattr(nn, ACTIVATIONS[activation])())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (logits or values) for a batch of rows, shape ``(rows, n_outputs)``."""
        return self.layers(x)  # type: ignore[no-any-return]
