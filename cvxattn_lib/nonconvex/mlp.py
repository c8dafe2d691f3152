r"""The non-convex two-layer network the convex programs are equivalent to.

.. math:: f(x) = \sum_{j=1}^m \sigma_j(x^\top w_{1j})\, w_{2j}^\top,

with :math:`\sigma` the identity (linear), :math:`\max(\cdot,0)` (ReLU) or, for gated ReLU, the
fixed gate :math:`\sigma_j(u) = 1\{x^\top g_j \ge 0\}\,u`.  Weights ``W1`` (d, m), ``W2`` (m, c),
gates ``G`` (d, m).  Penalty (see :func:`.training.penalty`):
:math:`\tfrac12\sum_j \|w_{1j}\|^2 + \|w_{2j}\|^2`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..validation import as_float_array, choice
from .base import WeightedModel

ACTIVATIONS = ("linear", "gated_relu", "relu")


class TwoLayerNet(WeightedModel):
    """Two-layer network with ``m`` hidden neurons; float64 by default for exact comparisons."""

    def __init__(self, d: int, m: int, c: int, activation: str = "relu", gates=None,
                 init_scale: float = 1.0, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.activation = choice("activation", activation, ACTIVATIONS)
        w1 = torch.randn(d, m, generator=generator, dtype=dtype) * init_scale / np.sqrt(d)
        w2 = torch.randn(m, c, generator=generator, dtype=dtype) * init_scale / np.sqrt(m)
        self.W1 = nn.Parameter(w1)
        self.W2 = nn.Parameter(w2)
        self.set_gates(activation, gates, (d, m), dtype)

    def hidden(self, X: torch.Tensor) -> torch.Tensor:
        """Hidden activations sigma(X W1), shape (n, m)."""
        H = X @ self.W1
        if self.activation == "relu":
            return torch.relu(H)
        if self.activation == "gated_relu":
            return H * (X @ self.G >= 0).to(H.dtype)
        return H

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.hidden(X) @ self.W2

    @classmethod
    def from_weights(cls, weights: dict, activation: str,
                     dtype: torch.dtype = torch.float64) -> "TwoLayerNet":
        """The network with exactly these weights (``W1`` (d, m), ``W2`` (m, c), ``G`` (d, m))."""
        W1 = as_float_array("weights['W1']", weights["W1"], 2)
        d, m = W1.shape
        W2 = as_float_array("weights['W2']", weights["W2"], 2, shape=(m, None))
        net = cls(d, m, W2.shape[1], activation, gates=weights.get("G"), dtype=dtype)
        return net.load(W1, W2)


def repeat_gates(gates: np.ndarray, per_gate: int) -> np.ndarray:
    """Each gate column repeated ``per_gate`` times: a gated network with that many neurons per gate
    (``min(d, c) + 1`` per gate suffices for the non-convex network to reach the convex optimum)."""
    return np.repeat(np.asarray(gates, dtype=np.float64), per_gate, axis=1)
