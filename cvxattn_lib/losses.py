r"""Losses, written once for every model, with what the certificates need.

Convention (the whole project): a **sum over samples**, never a mean.

* squared: :math:`L(U) = \tfrac12 \|U - Y\|_F^2`, gradient :math:`U - Y`, Fenchel conjugate
  :math:`L^*(V) = \langle V, Y\rangle + \tfrac12 \|V\|_F^2`.
* cross_entropy (softmax, integer labels y): :math:`L(U) = \sum_i \operatorname{lse}(u_i) - u_{i,y_i}`,
  gradient :math:`P - E` (softmax minus one-hot), and for :math:`V = Q - E` with rows of
  :math:`Q` in the simplex, :math:`-L^*(V) = \sum_i H(q_i)` (Shannon entropy), else :math:`+\infty`.

Weak duality gives, for every dual-feasible :math:`V`, the lower bound :math:`-L^*(V)` on the
regularised optimum (see :mod:`cvxattn_lib.certificates`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax, xlogy


def one_hot(labels: np.ndarray, c: int) -> np.ndarray:
    """Rows ``e_{y_i}`` of the c x c identity."""
    E = np.zeros((labels.shape[0], c))
    E[np.arange(labels.shape[0]), labels] = 1.0
    return E


def loss_value(U: np.ndarray, Y: np.ndarray, loss: str) -> float:
    """L(U) in float64 (numpy)."""
    U = np.asarray(U, dtype=np.float64)
    if loss == "squared":
        return 0.5 * float(np.sum((U - Y) ** 2))
    return float(np.sum(logsumexp(U, axis=1)) - np.sum(U[np.arange(U.shape[0]), Y]))


def loss_gradient(U: np.ndarray, Y: np.ndarray, loss: str) -> np.ndarray:
    """The gradient of L at U (same shape as U)."""
    U = np.asarray(U, dtype=np.float64)
    if loss == "squared":
        return U - Y
    return softmax(U, axis=1) - one_hot(Y, U.shape[1])


def neg_conjugate(V: np.ndarray, Y: np.ndarray, loss: str) -> float:
    """-L^*(V): the dual objective, finite only on the conjugate's domain (else ``-inf``)."""
    if loss == "squared":
        return float(-np.sum(V * Y) - 0.5 * np.sum(V**2))
    Q = V + one_hot(Y, V.shape[1])
    if Q.min() < -1e-12 or np.abs(Q.sum(axis=1) - 1).max() > 1e-9:
        return -np.inf
    Q = np.clip(Q, 0.0, None)
    return float(-np.sum(xlogy(Q, Q)))


def best_dual_scale(V: np.ndarray, Y: np.ndarray, loss: str, t_max: float) -> float:
    r"""The t in [0, t_max] that maximises -L^*(tV) (closed form for squared, else t_max clipped
    to 1, where tV + E stays a convex combination of P and E)."""
    if loss == "squared":
        vv = float(np.sum(V**2))
        if vv == 0.0:
            return 0.0
        return float(np.clip(-np.sum(V * Y) / vv, 0.0, t_max))
    return float(min(t_max, 1.0))


def torch_loss(U, Y, loss: str):
    """The same L(U) in torch (sum over samples); Y float (n, c) or int64 labels (n,)."""
    import torch

    if loss == "squared":
        return 0.5 * torch.sum((U - Y) ** 2)
    return torch.nn.functional.cross_entropy(U, Y, reduction="sum")
