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
adjusted Rand index (1: the planted clusters, ~0: chance).  This read-out is derived in this
collection (the paper's abstract says attention "implicitly clusters the tokens"; its own read-out
was not available to us).

Notebook 03 uses a second toy, :func:`routing_clusters` (content channels from the planted toy plus
value channels; targets the own-cluster mean of the values, so a layer must route by cluster), the
baselines of :data:`METHODS` (raw token Gram, linear attention with and without a constant channel,
softmax attention) scored over toy draws by :func:`ari_table`, and gate selection along β
(:func:`active_gates`, :func:`dual_per_gate`, :func:`beta_max`, :func:`gate_path`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .nonconvex.attention import MultiHeadAttention
from .validation import as_float_array, choice, positive_int, positive_scalar, seed_value


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


def _cluster_count(K, s: int, what: str = "tokens") -> int:
    """``K`` as an int in [1, s]: a partition of s items has at least one and at most s groups."""
    K = positive_int("K", K)
    if K > s:
        raise ValueError(f"K must be between 1 and the number of {what} ({s}), got {K}")
    return K


def kmeans(P: np.ndarray, K: int, seed: int = 0, restarts: int = 8, iters: int = 50) -> np.ndarray:
    """Lloyd's k-means with k-means++ starts; returns labels of the rows of P."""
    P = as_float_array("P", P, 2)
    K = _cluster_count(K, len(P), "rows of P")
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        C = [P[rng.integers(len(P))]]
        for _ in range(1, K):
            d2 = np.min(((P[:, None] - np.array(C)[None]) ** 2).sum(-1), axis=1)
            C.append(P[rng.choice(len(P), p=d2 / d2.sum())] if d2.sum() > 0 else P[0])
        C = np.array(C)
        lab = None
        for _ in range(iters):
            new = np.argmin(((P[:, None] - C[None]) ** 2).sum(-1), axis=1)
            if lab is not None and np.array_equal(new, lab):
                break  # a fixed point: further iterations would repeat it exactly
            lab = new
            C = np.array([P[lab == k].mean(0) if np.any(lab == k) else C[k] for k in range(K)])
        cost = ((P - C[lab]) ** 2).sum()
        if cost < best_cost:
            best, best_cost = lab, cost
    return best


def spectral_clusters(affinity: np.ndarray, K: int, seed: int = 0) -> np.ndarray:
    r"""Cluster the nodes of one affinity matrix (s, s) into K groups: the K leading eigenvectors
    of :math:`D^{-1/2}AD^{-1/2}`, rows normalised, then k-means (Ng, Jordan & Weiss, NIPS 2001)."""
    A = as_float_array("affinity", affinity, 2)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"affinity must be a square matrix (s, s), got shape {A.shape}")
    K = _cluster_count(K, A.shape[0])
    A = np.maximum(A, 0)
    deg = A.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    _, vecs = np.linalg.eigh(inv[:, None] * A * inv[None])
    E = vecs[:, -K:]
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    return kmeans(E, K, seed=seed)


def adjusted_rand_index(a, b) -> float:
    """Hubert & Arabie's adjusted Rand index of two labelings (1: identical partitions)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.size != b.size:
        raise ValueError(f"a and b must label the same items: got {a.size} and {b.size} labels")
    if a.size == 0:
        raise ValueError("a and b are empty: the ARI of two labelings needs at least one item")
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


def token_groups(weights: dict, activation: str, X: np.ndarray, K: int,
                 seed: int = 0) -> np.ndarray:
    """The learned grouping (n, s): spectral clusters of each sample's attention affinity."""
    X = as_float_array("X", X, 3)
    K = _cluster_count(K, X.shape[1])
    return np.stack([spectral_clusters(A, K, seed) for A in attention_affinity(weights, activation, X)])


def clustering_ari(weights: dict, activation: str, X: np.ndarray, clusters: np.ndarray,
                   K: int, seed: int = 0) -> float:
    """Mean over samples of the ARI between the learned groups (:func:`token_groups`) and the
    planted clusters."""
    X = as_float_array("X", X, 3)
    clusters = np.asarray(clusters)
    if clusters.shape != X.shape[:2]:
        raise ValueError(f"clusters must have shape (n, s) = {X.shape[:2]} (one label per token of X), "
                         f"got {clusters.shape}")
    groups = token_groups(weights, activation, X, K, seed)
    return float(np.mean([adjusted_rand_index(g, c) for g, c in zip(groups, clusters)]))


# ---------------------------------------------------------------------------------------------
# Notebook 03: a toy that needs routing, the baselines, the seed loop, and gate selection
# ---------------------------------------------------------------------------------------------

def routing_clusters(n: int = 30, s: int = 6, K: int = 3, noise: float = 0.1, values: int = 1,
                     value_scale: float = 1.0, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""A planted-cluster toy whose targets can only be met by routing tokens to their cluster.

    Token t of a sample is :math:`x_t=(\mu_{k(t)}+\sigma\varepsilon_t,\ v_t)`: two *content*
    channels from :func:`planted_clusters` (d = 2, K centres on the unit circle, noise σ) followed
    by ``values`` *value* channels :math:`v_t\sim N(0,\,\text{value\_scale}^2 I)`, independent of
    the cluster.  The target is the mean value over the query's own cluster,
    :math:`y_t=\frac{1}{|k(t)|}\sum_{u:k(u)=k(t)}v_u` (c = ``values`` channels): it cannot be
    computed from :math:`x_t` alone.  Returns ``(X (n, s, 2 + values), Y (n, s, values),
    clusters (n, s))``.
    """
    values = positive_int("values", values)
    value_scale = positive_scalar("value_scale", value_scale)
    if isinstance(noise, bool) or not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    content, _, clusters = planted_clusters(n=n, s=s, d=2, K=K, noise=noise, seed=seed)
    V = value_scale * np.random.default_rng([seed, 1]).standard_normal((n, s, values))
    same = (clusters[:, :, None] == clusters[:, None, :]).astype(float)
    Y = np.einsum("ntu,nua->nta", same / same.sum(axis=2, keepdims=True), V)
    return np.concatenate([content, V], axis=2), Y, clusters


def with_constant_channel(X: np.ndarray) -> np.ndarray:
    """Tokens (n, s, d) with a constant-1 channel appended: (n, s, d + 1).  Linear attention on
    them has scores :math:`\\tilde x_t^\\top W_1\\tilde x_u`, which include a constant and terms
    linear in :math:`x_t` or :math:`x_u` (as notebook 04's cluster task has)."""
    X = as_float_array("X", X, 3)
    return np.concatenate([X, np.ones(X.shape[:2] + (1,))], axis=2)


def gram_affinity(X: np.ndarray) -> np.ndarray:
    r"""The raw token Gram matrices :math:`X_iX_i^\top` (n, s, s): the no-training baseline
    (spectral clustering clips its negative entries to 0)."""
    X = as_float_array("X", X, 3)
    return np.einsum("ntd,nud->ntu", X, X)


def groups_from_affinity(affinity: np.ndarray, K: int, seed: int = 0) -> np.ndarray:
    """Spectral clusters (n, s) of each sample's affinity (n, s, s)."""
    affinity = as_float_array("affinity", affinity, 3)
    K = _cluster_count(K, affinity.shape[1])
    return np.stack([spectral_clusters(A, K, seed) for A in affinity])


def mean_ari(groups: np.ndarray, clusters: np.ndarray) -> float:
    """Mean over samples of the ARI between learned ``groups`` (n, s) and ``clusters`` (n, s)."""
    groups, clusters = np.asarray(groups), np.asarray(clusters)
    if groups.shape != clusters.shape or groups.ndim != 2:
        raise ValueError(f"groups and clusters must both have shape (n, s), got {groups.shape} "
                         f"and {clusters.shape}")
    return float(np.mean([adjusted_rand_index(g, c) for g, c in zip(groups, clusters)]))


def active_gates(Z, tol: float = 1e-6) -> np.ndarray:
    r"""Which gates carry heads: :math:`\|Z_j\|_*>\text{tol}\cdot\max(1,\max_k\|Z_k\|_*)`
    (boolean, one per gate), the scale convention of the fits' rank cut (``rank_tol`` times the
    largest singular value or 1).  At tol = 1e-6 the threshold sits far above the interior-point
    solver's residue (~1e-10) and, in notebook 03, far below any gate in use (both printed)."""
    if isinstance(tol, bool) or not isinstance(tol, float | int) or not 0 < tol < 1:
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    norms = np.array([np.linalg.norm(np.asarray(Zj, float), "nuc") for Zj in Z])
    if norms.size == 0:
        raise ValueError("Z must hold at least one lifted matrix")
    return norms > tol * max(1.0, norms.max())


def dual_per_gate(fit) -> np.ndarray:
    r""":math:`\|\mathcal A_j^*(V)\|_2/\beta` per gate at a squared-loss fit, with
    :math:`V=\nabla L` the residual: :math:`\le1` for every gate at the optimum (dual
    feasibility), :math:`=1` wherever :math:`Z_j\ne0` (complementary slackness)."""
    from .losses import loss_gradient

    V = loss_gradient(fit.prediction(), fit.Y, fit.loss)
    return np.array([np.linalg.norm(G, 2) for G in fit.adjoint(V)]) / fit.beta


def beta_max(X: np.ndarray, Y: np.ndarray, gates: np.ndarray) -> float:
    r"""The smallest β at which Z = 0 is optimal (no gate carries a head), squared loss:
    :math:`\max_j\|\mathcal A_j^*(Y)\|_2` (the gradient of the loss at Z = 0 is −Y; Z = 0 is
    optimal iff every gate's dual constraint holds there)."""
    from .convex.attention import attention_masks, design

    X = as_float_array("X", X, 3)
    n, s, d = X.shape
    Y = as_float_array("Y", Y, 3, shape=(n, s, None))
    Yf = Y.reshape(n * s, -1)
    c = Yf.shape[1]
    return float(max(np.linalg.norm((design(X, M).T @ Yf).reshape(d * d, d * c), 2)
                     for M in attention_masks(X, np.asarray(gates, float))))


@dataclass
class GatePath:
    """Gate selection along β: ``betas`` (B,), ``active`` (B, P) bool, ``dual`` (B, P)
    (:math:`\\|\\mathcal A_j^*(V)\\|_2/\\beta`), ``nuclear`` (B, P) (:math:`\\|Z_j\\|_*`), ``heads``
    (B,) (sum of the ranks), ``rel_gap`` (B,) certified, ``ari`` (B,) against the clusters (NaN
    where no head is left: nothing to read a grouping from)."""

    betas: np.ndarray
    active: np.ndarray
    dual: np.ndarray
    nuclear: np.ndarray
    heads: np.ndarray
    rel_gap: np.ndarray
    ari: np.ndarray
    tol: float

    @property
    def counts(self) -> np.ndarray:
        """Gates carrying heads at each β."""
        return self.active.sum(axis=1)


def gate_path(X, Y, clusters, betas, gates, K: int, tol: float = 1e-6, seed: int = 0) -> GatePath:
    """Solve the gated-ReLU attention program at each β (same ``gates``) and record which gates
    carry heads (:func:`active_gates` at ``tol``), the dual per gate, heads and the ARI."""
    from .convex.attention import fit_self_attention

    rows = []
    for beta in betas:
        fit = fit_self_attention(X, Y, beta, activation="gated_relu", gates=gates)
        rows.append((active_gates(fit.Z, tol), dual_per_gate(fit),
                     [np.linalg.norm(Zj, "nuc") for Zj in fit.Z], fit.n_heads,
                     fit.certificate()["rel_gap"],
                     clustering_ari(fit.weights(), "gated_relu", X, clusters, K, seed)
                     if fit.n_heads else np.nan))
    act, dual, nuc, heads, gap, ari = (np.array(v) for v in zip(*rows))
    return GatePath(np.asarray(betas, float), act, dual, nuc, heads, gap, ari, tol)


METHODS = ("gated ReLU (convex)", "linear (convex)", "linear + constant channel (convex)",
           "softmax (non-convex)", "raw Gram, spectral (no training)")


@dataclass
class MethodFit:
    """One method on one toy draw: the token ``affinity`` (n, s, s) the grouping is read from,
    the regularised ``objective`` (None for the raw Gram), the certified ``rel_gap`` (convex
    only), and for gated ReLU the number of gates carrying heads (``active``)."""

    method: str
    affinity: np.ndarray
    objective: float | None = None
    rel_gap: float | None = None
    active: int | None = None


def fit_method(method: str, X, Y, beta: float, n_gates: int = 16, seed: int = 0,
               softmax_heads: int = 2, softmax_restarts: int = 1,
               softmax_iter: int = 300) -> MethodFit:
    """Fit one of :data:`METHODS` on (X, Y) at weight decay ``beta`` and return its affinity.

    Convex layers are solved to a certified optimum (``cal.convex.fit_self_attention``; gates
    drawn with ``seed``); the constant-channel layer sees :func:`with_constant_channel` (X);
    softmax attention (``softmax_heads`` heads) is trained with L-BFGS from ``softmax_restarts``
    seeded starts, best objective kept; the raw Gram ignores Y and β."""
    from .convex.attention import fit_self_attention
    from .nonconvex import train_attention

    choice("method", method, METHODS)
    X = as_float_array("X", X, 3)
    if method == METHODS[4]:
        return MethodFit(method, gram_affinity(X))
    if method == METHODS[3]:
        runs = train_attention(X, Y, beta, "softmax", m=softmax_heads, restarts=softmax_restarts,
                               seed=seed, max_iter=softmax_iter, progress=False)
        best = min(runs, key=lambda r: r.objective)
        return MethodFit(method, attention_affinity(best.weights, "softmax", X), best.objective)
    gated = method == METHODS[0]
    Xm = with_constant_channel(X) if method == METHODS[2] else X
    fit = fit_self_attention(Xm, Y, beta, activation="gated_relu" if gated else "linear",
                             n_gates=n_gates if gated else None, seed=seed)
    act = int(active_gates(fit.Z).sum()) if gated else None
    return MethodFit(method, attention_affinity(fit.weights(), fit.activation, Xm), fit.value,
                     fit.certificate()["rel_gap"], act)


@dataclass
class ARITable:
    """Mean ARI per method, β and toy draw: ``ari[method]`` (B, S) for ``betas`` (B,) and
    ``seeds`` (S,); ``active`` (B, S) gates carrying heads in the gated fit (of ``n_gates``);
    ``max_rel_gap`` the largest certified gap of any convex fit."""

    betas: np.ndarray
    seeds: tuple
    ari: dict
    active: np.ndarray
    n_gates: int
    max_rel_gap: float

    def summary(self, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(mean, std, min, max) over seeds, each (B,)."""
        A = self.ari[method]
        return A.mean(1), A.std(1), A.min(1), A.max(1)

    def format(self) -> str:
        """The table as text: mean ± std [min, max] over the draws, one row per method."""
        head = f"{'method':<34}|" + "|".join(f"{'β = ' + format(b, 'g'):^24}" for b in self.betas)
        lines = [f"ARI against the planted clusters, over {len(self.seeds)} toy draws "
                 f"(seeds {', '.join(map(str, self.seeds))}): mean ± std [min, max]", head,
                 "-" * len(head)]
        for m in METHODS:
            if m not in self.ari:
                continue
            mean, std, lo, hi = self.summary(m)
            lines.append(f"{m:<34}|" + "|".join(
                f"{f'{a:.3f} ± {s:.3f} [{l:.2f}, {h:.2f}]':^24}" for a, s, l, h in
                zip(mean, std, lo, hi)))
        counts = "|".join(f"{f'{self.active[b].min()}-{self.active[b].max()} of {self.n_gates}':^24}"
                          for b in range(len(self.betas)))
        lines.append(f"{'gates carrying heads (gated ReLU)':<34}|{counts}")
        return "\n".join(lines)


def ari_table(betas, seeds, K: int = 3, toy: dict | None = None, n_gates: int = 16,
              methods=METHODS, **method_options) -> ARITable:
    """The seed loop behind notebook 03's table: for each toy draw (:func:`routing_clusters`
    with ``toy`` and ``seed``) and each β, fit every method (:func:`fit_method`, gates drawn with
    the same seed) and score its spectral grouping (:func:`groups_from_affinity`) by the mean ARI
    against the planted clusters.  The raw Gram does not depend on β; it is computed once per draw."""
    betas = np.array([positive_scalar("betas", b) for b in betas])
    seeds = tuple(seed_value("seeds", s) for s in seeds)
    if not seeds or not len(betas):
        raise ValueError("betas and seeds must each hold at least one value")
    for m in methods:
        choice("methods", m, METHODS)
    toy = dict(toy or {}, K=K)
    ari = {m: np.zeros((len(betas), len(seeds))) for m in methods}
    active = np.zeros((len(betas), len(seeds)), int)
    gap = 0.0
    for i, seed in enumerate(seeds):
        X, Y, C = routing_clusters(seed=seed, **toy)
        for m in methods:
            for b, beta in enumerate(betas):
                if m == METHODS[4] and b > 0:
                    ari[m][b, i] = ari[m][0, i]
                    continue
                f = fit_method(m, X, Y, beta, n_gates=n_gates, seed=seed, **method_options)
                ari[m][b, i] = mean_ari(groups_from_affinity(f.affinity, K, seed), C)
                if f.rel_gap is not None:
                    gap = max(gap, f.rel_gap)
                if f.active is not None:
                    active[b, i] = f.active
    return ARITable(betas, seeds, ari, active, n_gates, gap)
