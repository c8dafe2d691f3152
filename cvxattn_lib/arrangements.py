r"""Hyperplane arrangements: the activation patterns a ReLU layer can produce on fixed data.

A neuron with weights :math:`h` acts on the data :math:`X` (n x d) through the diagonal pattern
:math:`D(h) = \operatorname{diag}(1\{X h \ge 0\})`.  Only finitely many patterns exist: for n points in
general position in :math:`\mathbb{R}^d` they are the regions of a central arrangement of n
hyperplanes, :math:`2\sum_{k=0}^{d-1}\binom{n-1}{k}` of them, and at most
:math:`2r\,(e(n-1)/r)^r` with :math:`r = \operatorname{rank}(X)` (Pilanci & Ergen 2020).

Patterns are stored as boolean matrices of shape (n, P): column j is the diagonal of D_j.
"""

from __future__ import annotations

from itertools import combinations
from math import comb, e

import numpy as np

from .validation import as_float_array, positive_int


def sample_gates(d: int, n_gates: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``n_gates`` gate vectors drawn i.i.d. N(0, I_d), as the columns of a (d, n_gates) array."""
    d = positive_int("d", d)
    n_gates = positive_int("n_gates", n_gates)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d, n_gates))


def patterns_from_gates(X, gates, *, unique: bool = True,
                        drop_zero: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Patterns ``1{X g_j >= 0}`` for the gate columns ``g_j``.

    Returns ``(D, G)``: D (n, P) boolean, G (d, P) the gates that produced them.  With ``unique``,
    duplicate patterns are dropped and the first gate of each is kept, in order of first
    appearance; with ``drop_zero`` the all-zero pattern (a neuron that is never active, which
    contributes nothing to any network) is dropped too.
    """
    X = as_float_array("X", X, 2)
    G = as_float_array("gates", gates, 2, shape=(X.shape[1], None))
    D = X @ G >= 0
    if not unique:
        return D, G
    keep, seen = [], set()
    for j in range(D.shape[1]):
        key = D[:, j].tobytes()
        if key in seen or (drop_zero and not D[:, j].any()):
            continue
        seen.add(key)
        keep.append(j)
    return D[:, keep], G[:, keep]


def enumerate_patterns(X, *, drop_zero: bool = True,
                       tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    r"""Every distinct non-zero pattern of ``X`` (exact for data in general position).

    Each region of the arrangement has a vertex ray, the null space of d - 1 rows of X.  For each
    such (d-1)-subset S and ray :math:`\pm r`, the gates :math:`\pm r + \epsilon q_s` with
    :math:`X_S q_s = s` for every sign vector s reach all regions around that ray.
    Cost :math:`O(\binom{n}{d-1} 2^d)` gates, so this is for small d (a toy's d <= 4).
    Returns ``(D, G)`` as :func:`patterns_from_gates`.
    """
    X = as_float_array("X", X, 2)
    n, d = X.shape
    if d == 1:
        return patterns_from_gates(X, np.array([[1.0, -1.0]]), drop_zero=drop_zero)
    if d > 6 or comb(n, d - 1) * 2**d > 2_000_000:
        raise ValueError(f"X of shape {X.shape} is too large to enumerate every pattern "
                         "(C(n, d-1) * 2^d > 2e6); use sample_gates instead")
    gates = []
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * (d - 1))).reshape(d - 1, -1).T
    for S in combinations(range(n), d - 1):
        XS = X[list(S)]
        _, sv, Vt = np.linalg.svd(XS)
        if sv.min() < tol * max(sv.max(), 1.0):
            continue  # rows not independent: no vertex ray from this subset
        ray = Vt[-1]
        Q = np.linalg.pinv(XS) @ signs.T  # (d, 2^(d-1)): X_S q = s
        others = np.setdiff1d(np.arange(n), S)
        xr = X[others] @ ray
        xq = np.abs(X[others] @ Q).max(axis=1) if others.size else np.zeros(0)
        eps = 0.5 * np.min(np.abs(xr) / np.maximum(xq, 1e-300)) if others.size else 1.0
        eps = min(eps, 1.0)
        for sgn in (1.0, -1.0):
            gates.append(sgn * ray[:, None] + eps * Q)
    G = np.concatenate(gates, axis=1) if gates else np.zeros((d, 0))
    return patterns_from_gates(X, G, drop_zero=drop_zero)


def region_count_general_position(n: int, r: int) -> int:
    r"""Regions of a central arrangement of n hyperplanes in general position in
    :math:`\mathbb{R}^r`: :math:`2\sum_{k=0}^{r-1}\binom{n-1}{k}`."""
    return 2 * sum(comb(n - 1, k) for k in range(r))


def pattern_count_bound(n: int, r: int) -> float:
    r"""The upper bound :math:`2r\,(e(n-1)/r)^r` on the number of patterns (n samples, rank r)."""
    return 2 * r * (e * (n - 1) / r) ** r


def cones_2d(X, *, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The cones of the arrangement of the lines :math:`\{w\in\mathbb{R}^2: x_i^\top w = 0\}`.

    Each line is perpendicular to :math:`x_i`, at angles :math:`\angle x_i \pm \pi/2`.  Sorted, the
    (distinct) line angles cut the circle into arcs; every arc is a cone of weight vectors with one
    activation pattern, read off at the arc's middle direction.  Points on a common line through
    the origin share a line, so n points in general position give 2n cones (the count of
    :func:`region_count_general_position` with r = 2).

    ``X`` (n, 2) with non-zero rows.  Returns ``(D, edges, mids)``: D (n, P) boolean patterns (the
    all-zero one included when it occurs), edges (P + 1,) increasing angles in radians, cone j
    being the arc from ``edges[j]`` to ``edges[j + 1]``, and mids (P,) its middle angle.
    """
    X = as_float_array("X", X, 2, shape=(None, 2))
    if np.any(np.linalg.norm(X, axis=1) <= tol):
        raise ValueError("X must have non-zero rows: a zero row gives no line")
    phi = np.arctan2(X[:, 1], X[:, 0]) + np.pi / 2
    angles = np.sort(np.mod(np.concatenate([phi, phi + np.pi]), 2 * np.pi))
    distinct = angles[np.concatenate([[True], np.diff(angles) > tol])]
    if 2 * np.pi - distinct[-1] + distinct[0] <= tol:  # the same line seen at 0 and 2 pi
        distinct = distinct[1:]
    edges = np.concatenate([distinct, [distinct[0] + 2 * np.pi]])
    mids = 0.5 * (edges[:-1] + edges[1:])
    W = np.stack([np.cos(mids), np.sin(mids)])
    return X @ W >= 0, edges, mids


def relu_dual_norm(X, v, D=None) -> float:
    r""":math:`\max_{\|u\|_2\le1}|v^\top(Xu)_+|`, the constraint of the ReLU network's dual, exactly.

    On the cone :math:`K_j=\{u:(2D_j-I)Xu\ge0\}` of pattern :math:`D_j`, :math:`(Xu)_+=D_jXu`, so
    the maximum is :math:`\max_j\max_\pm\|\Pi_{K_j}(\pm X^\top D_jv)\|`
    (:func:`cvxattn_lib.certificates.cone_support`).  ``D`` (n, P): the patterns to maximise over
    (default: every pattern, :func:`enumerate_patterns`; then the value is exact).
    """
    from .certificates import cone_support

    X = as_float_array("X", X, 2)
    v = as_float_array("v", v, 1, shape=(X.shape[0],))
    D = enumerate_patterns(X)[0] if D is None else np.asarray(D, dtype=bool)
    if D.ndim != 2 or D.shape[0] != X.shape[0]:
        raise ValueError(f"D must have shape ({X.shape[0]}, P), got {D.shape}")
    out = 0.0
    for j in range(D.shape[1]):
        g = X.T @ (D[:, j] * v)
        A = (2.0 * D[:, j] - 1.0)[:, None] * X
        out = max(out, cone_support(A, g), cone_support(A, -g))
    return out
