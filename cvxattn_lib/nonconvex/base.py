"""What every non-convex model here shares: weights ``W1``, ``W2`` (and gates ``G``) as numpy
arrays, loading given weights, and float64 predictions."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class WeightedModel(nn.Module):
    """Base of the models with parameters ``W1``, ``W2`` and an optional gate buffer ``G``."""

    G: torch.Tensor | None

    def weights(self) -> dict[str, np.ndarray]:
        """``W1``, ``W2`` (and ``G`` for gated models) as float64 numpy arrays."""
        out = {"W1": self.W1.detach().cpu().double().numpy(),
               "W2": self.W2.detach().cpu().double().numpy()}
        if self.G is not None:
            out["G"] = self.G.detach().cpu().double().numpy()
        return out

    def load(self, W1: np.ndarray, W2: np.ndarray):
        """Copy ``W1`` and ``W2`` into the parameters; returns the model."""
        with torch.no_grad():
            self.W1.copy_(torch.as_tensor(W1))
            self.W2.copy_(torch.as_tensor(W2))
        return self

    def predict(self, X) -> np.ndarray:
        """Outputs on ``X`` as a float64 numpy array (no gradients)."""
        p = next(self.parameters())
        with torch.no_grad():
            out = self(torch.as_tensor(np.asarray(X), dtype=p.dtype, device=p.device))
        return out.double().cpu().numpy()
