r"""The non-convex multi-head self-attention layer the attention programs are equivalent to.

Head j: :math:`\sigma_j(XW_{1j}X^\top)\,XW_{2j}` on a sample X (s, d); the layer sums the heads.
``W1`` (m, d, d), ``W2`` (m, d, c), gates ``G`` (m, d, d) for gated ReLU.  Activations: linear,
gated ReLU :math:`1\{XG_jX^\top\ge0\}\odot S`, ReLU :math:`\max(S,0)`, and the practical softmax
(row-wise on :math:`S/\sqrt d`, non-convex only).  With ``pool`` the outputs are averaged over
tokens (logits for cross-entropy on labels).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..validation import as_float_array, choice
from .base import WeightedModel

ATTENTION_KINDS = ("linear", "gated_relu", "relu", "softmax")


class MultiHeadAttention(WeightedModel):
    """m heads of self-attention (float64 by default for exact comparisons)."""

    def __init__(self, d: int, m: int, c: int, activation: str = "linear", gates=None,
                 pool: bool = False, init_scale: float = 1.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.activation = choice("activation", activation, ATTENTION_KINDS)
        self.pool = pool
        self.W1 = nn.Parameter(torch.randn(m, d, d, generator=generator, dtype=dtype)
                               * init_scale / d)
        self.W2 = nn.Parameter(torch.randn(m, d, c, generator=generator, dtype=dtype)
                               * init_scale / np.sqrt(d))
        self.set_gates(activation, gates, (m, d, d), dtype)

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        """Attention matrices sigma(X W1_j X^T) for every sample and head: (n, m, s, s)."""
        S = torch.einsum("nta,mak,nuk->nmtu", X, self.W1, X)
        if self.activation == "relu":
            return torch.relu(S)
        if self.activation == "gated_relu":
            return S * (torch.einsum("nta,mak,nuk->nmtu", X, self.G, X) >= 0).to(S.dtype)
        if self.activation == "softmax":
            return torch.softmax(S / np.sqrt(X.shape[-1]), dim=-1)
        return S

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("nmtu,nul,mlc->ntc", self.scores(X), X, self.W2)
        return out.mean(dim=1) if self.pool else out

    @classmethod
    def from_weights(cls, weights: dict, activation: str, pool: bool = False,
                     dtype: torch.dtype = torch.float64) -> "MultiHeadAttention":
        """The layer with exactly these weights (``W1`` (m, d, d), ``W2`` (m, d, c), ``G``)."""
        W1 = as_float_array("weights['W1']", weights["W1"], 3)
        m, d, _ = W1.shape
        W2 = as_float_array("weights['W2']", weights["W2"], 3, shape=(m, d, None))
        net = cls(d, m, W2.shape[2], activation, gates=weights.get("G"), pool=pool, dtype=dtype)
        return net.load(W1, W2)
