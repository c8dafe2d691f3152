"""What every non-convex model here shares: weights (``W1``, ``W2`` unless a model names others in
``PARAMS``) and gates ``G`` as numpy arrays, loading given weights, and float64 predictions."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class WeightedModel(nn.Module):
    """Base of the models with parameters ``PARAMS`` (``W1``, ``W2``) and an optional gate
    buffer ``G``."""

    G: torch.Tensor | None
    PARAMS: tuple[str, ...] = ("W1", "W2")

    def set_gates(self, activation: str, gates, shape: tuple, dtype: torch.dtype) -> None:
        """Register the fixed gates as buffer ``G`` of ``shape`` for ``'gated_relu'`` (required
        then), else ``G = None``."""
        if activation != "gated_relu":
            self.G = None
            return
        if gates is None:
            raise ValueError(f"gates {shape} are required for activation='gated_relu'")
        G = torch.as_tensor(np.asarray(gates), dtype=dtype)
        if tuple(G.shape) != tuple(shape):
            raise ValueError(f"gates must have shape {tuple(shape)}, got {tuple(G.shape)}")
        self.register_buffer("G", G)

    def weights(self) -> dict[str, np.ndarray]:
        """The ``PARAMS`` (and ``G`` for gated models) as float64 numpy arrays."""
        out = {k: getattr(self, k).detach().cpu().double().numpy() for k in self.PARAMS}
        if self.G is not None:
            out["G"] = self.G.detach().cpu().double().numpy()
        return out

    def load(self, *arrays: np.ndarray):
        """Copy the arrays into the ``PARAMS`` (``W1``, ``W2``) in order; returns the model."""
        with torch.no_grad():
            for k, a in zip(self.PARAMS, arrays, strict=True):
                getattr(self, k).copy_(torch.as_tensor(a))
        return self

    def predict(self, X) -> np.ndarray:
        """Outputs on ``X`` as a float64 numpy array (no gradients)."""
        p = next(self.parameters())
        with torch.no_grad():
            out = self(torch.as_tensor(np.asarray(X), dtype=p.dtype, device=p.device))
        return out.double().cpu().numpy()
