r"""Token clustering by attention, measured against planted clusters.

A planted toy: tokens :math:`x_t=\mu_{k(t)}+\sigma\varepsilon_t` from K latent clusters whose centres are
spread evenly on a circle in a 2-D subspace (so tokens of one cluster have positive inner products,
tokens of different clusters negative ones for K <= 3), and token targets that depend on cluster
membership: :math:`y_t=\tfrac1s\sum_{u:k(u)=k(t)}x_u` (the mean of the query's own cluster, scaled).
Every sample holds every cluster, about s/K tokens each, in random positions.

From a trained layer we read which keys each query groups with through the *contribution* of key u
to the output of query t, :math:`c_{tu}=\sum_j\sigma_j(XW_{1j}X^\top)[t,u]\,W_{2j}^\top x_u`
(the output of query t is :math:`\sum_u c_{tu}`).  Its norm, symmetrised, is the affinity: it uses
every head's attention weights (and, for gated ReLU, its pattern) and how much the head's value map
carries.  Spectral clustering of that affinity gives a grouping of the tokens, scored with the
adjusted Rand index (1: the planted clusters, ~0: chance).
"""

from __future__ import annotations

import numpy as np
import torch

from .nonconvex.attention import MultiHeadAttention
from .validation import as_float_array, positive_int


def planted_clusters(n: int = 40, s: int = 8, d: int = 4, K: int = 3, noise: float = 0.1,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, Y, clusters)``: X (n, s, d) tokens, Y (n, s, d) targets, clusters (n, s) in 0..K-1."""
    n, s, d, K = (positive_int(k, v) for k, v in [("n", n), ("s", s), ("d", d), ("K", K)])
    if d < 2:
        raise ValueError(f"d must be >= 2 (cluster centres live in a 2-D subspace), got {d}")
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, 2)))[0]  # a random 2-D subspace
    angles = 2 * np.pi * np.arange(K) / K
    centres = np.stack([np.cos(angles), np.sin(angles)], axis=1) @ basis.T  # (K, d), unit norm
    if s < K:
        raise ValueError(f"s must be >= K so that every sample holds every cluster, got s={s}, K={K}")
    # every sample holds every cluster (as an image holds all of its parts), in random positions
    clusters = rng.permuted(np.tile(np.arange(s) % K, (n, 1)), axis=1)
    X = centres[clusters] + noise * rng.standard_normal((n, s, d))
    same = clusters[:, :, None] == clusters[:, None, :]
    Y = np.einsum("ntu,nud->ntd", same.astype(float), X) / s
    return X, Y, clusters


def attention_affinity(weights: dict, activation: str, X: np.ndarray) -> np.ndarray:
    r"""Symmetric token affinities (n, s, s): :math:`\|c_{tu}\|_2` symmetrised, with
    :math:`c_{tu}=\sum_j\sigma_j(XW_{1j}X^\top)[t,u]\,W_{2j}^\top x_u` the contribution of key u to
    the output of query t (``weights`` with ``W1`` (m, d, d), ``W2`` (m, d, c), ``G`` if gated)."""
    X = as_float_array("X", X, 3)
    net = MultiHeadAttention.from_weights(weights, activation)
    with torch.no_grad():
        A = net.scores(torch.as_tensor(X)).numpy()  # (n, m, s, s)
    values = np.einsum("nua,mac->nmuc", X, np.asarray(weights["W2"], float))
    aff = np.linalg.norm(np.einsum("nmtu,nmuc->ntuc", A, values), axis=-1)
    return 0.5 * (aff + aff.transpose(0, 2, 1))


def kmeans(P: np.ndarray, K: int, seed: int = 0, restarts: int = 8, iters: int = 50) -> np.ndarray:
    """Lloyd's k-means with k-means++ starts; returns labels of the rows of P."""
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        C = [P[rng.integers(len(P))]]
        for _ in range(1, K):
            d2 = np.min(((P[:, None] - np.array(C)[None]) ** 2).sum(-1), axis=1)
            C.append(P[rng.choice(len(P), p=d2 / d2.sum())] if d2.sum() > 0 else P[0])
        C = np.array(C)
        for _ in range(iters):
            lab = np.argmin(((P[:, None] - C[None]) ** 2).sum(-1), axis=1)
            C = np.array([P[lab == k].mean(0) if np.any(lab == k) else C[k] for k in range(K)])
        cost = ((P - C[lab]) ** 2).sum()
        if cost < best_cost:
            best, best_cost = lab, cost
    return best


def spectral_clusters(affinity: np.ndarray, K: int, seed: int = 0) -> np.ndarray:
    r"""Cluster the nodes of one affinity matrix (s, s) into K groups: the K leading eigenvectors
    of :math:`D^{-1/2}AD^{-1/2}`, rows normalised, then k-means (Ng, Jordan & Weiss 2002)."""
    A = np.maximum(np.asarray(affinity, float), 0)
    deg = A.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    _, vecs = np.linalg.eigh(inv[:, None] * A * inv[None])
    E = vecs[:, -K:]
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    return kmeans(E, K, seed=seed)


def adjusted_rand_index(a, b) -> float:
    """Hubert & Arabie's adjusted Rand index of two labelings (1: identical partitions)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)

    def pairs(x):
        return (x * (x - 1) / 2).sum()

    index, rows, cols, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), pairs(
        np.array([len(a)]))
    expected = rows * cols / total if total else 0.0
    top = 0.5 * (rows + cols) - expected
    return 1.0 if top == 0 else float((index - expected) / top)


def clustering_ari(weights: dict, activation: str, X: np.ndarray, clusters: np.ndarray,
                   K: int, seed: int = 0) -> float:
    """Mean over samples of the ARI between spectral clusters of the attention affinity and the
    planted clusters."""
    aff = attention_affinity(weights, activation, X)
    return float(np.mean([adjusted_rand_index(spectral_clusters(A, K, seed), c)
                          for A, c in zip(aff, clusters)]))
