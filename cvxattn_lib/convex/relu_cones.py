r"""The dual norms of the exact ReLU program's blocks, every pattern at once.

The ReLU program (:mod:`cvxattn_lib.convex.mlp`) has two blocks per pattern :math:`D_j`,
:math:`v_j` and :math:`w_j`, both in the cone :math:`K_j=\{u:(2D_j-I)Xu\ge0\}`.  At a residual
:math:`r=\hat y-y`, with :math:`g_j=X^\top D_jr`, their dual norms are

.. math:: \nu^v_j=\|\Pi_{K_j}(-g_j)\|_2=\max_{u\in K_j,\|u\|\le1}-g_j^\top u,\qquad
          \nu^w_j=\|\Pi_{K_j}(g_j)\|_2,

a zero block is optimal iff its dual norm is at most β, and the largest over all blocks is the dual
norm of the whole program (``arrangements.relu_dual_norm``, the certificate's constraint).

**Generic** (any d): one non-negative least-squares problem per block,
:func:`cvxattn_lib.certificates.cone_support` (about 30 µs each, 0.1 s for the 3122 blocks of
notebook 01's spiral).

**d = 3, rank(X) = 3** (2-D data with a bias column, every toy of notebook 01): exact and
vectorised, from the faces of the cones, computed once per data set.  :math:`K_j` is then a pointed
polyhedral cone in :math:`\mathbb{R}^3`; its faces are the cone itself, facets (each spanned by two
extreme rays) and extreme rays, and :math:`\Pi_K g` lies in the relative interior of one face F,
where it equals the projection of g on span(F).  Every candidate :math:`c=\Pi_{\mathrm{span}F}g`
that lies in K is a feasible direction with :math:`g^\top c/\|c\|=\|c\|\le\|\Pi_Kg\|`, and the
true face gives equality, so

.. math:: \|\Pi_Kg\|=\max\Big(0,\ \|g\|\,[g\in K],\ \max_{a<b}\|\Pi_{\mathrm{cone}(e_a,e_b)}g\|\,
          [\text{coefficients}\ge0],\ \max_a\,(e_a^\top g)_+\Big)

over the extreme rays :math:`e_a` of K (pairs of rays span cones inside K, so every pair may be
tried, adjacent or not).  The extreme rays are the lines :math:`x_i\times x_k` of two hyperplanes,
with the sign that puts them in K: a ray :math:`u` lies in exactly the cones whose pattern agrees
with :math:`1\{Xu>0\}` off the rows where :math:`x_l^\top u=0` (four cones in general position,
more where several planes share the line).  Tested against the NNLS values.
"""

from __future__ import annotations

import hashlib
from itertools import product

import numpy as np

from ..certificates import cone_support
from ..validation import as_float_array

ZERO_TOL = 1e-12  # |x_l^T u| <= ZERO_TOL ||x_l|| (unit u): the ray lies on plane l


class ReluCones:
    """Dual norms of every block of the ReLU program for fixed ``X`` (n, d) and patterns ``D``
    (n, P) (see the module).  ``method`` is ``'faces'`` (d = 3, rank 3: vectorised, exact) or
    ``'nnls'`` (any other case: one NNLS per block)."""

    def __init__(self, X, D):
        self.X = as_float_array("X", X, 2)
        n, d = self.X.shape
        D = np.asarray(D, dtype=bool)
        if D.ndim != 2 or D.shape[0] != n:
            raise ValueError(f"D must have shape ({n}, P), got {D.shape}")
        self.D, self.S = D, 2.0 * D - 1.0
        self.method = "faces" if d == 3 and np.linalg.matrix_rank(self.X) == 3 else "nnls"
        if self.method == "faces":
            self._faces()

    def _faces(self):
        X, D = self.X, self.D
        n, P = D.shape
        index = {D[:, j].tobytes(): j for j in range(P)}
        xn = np.linalg.norm(X, axis=1)
        pats, rays = [], []
        for i in range(n):
            for k in range(i + 1, n):
                e = np.cross(X[i], X[k])
                ne = np.linalg.norm(e)
                if ne <= ZERO_TOL * xn[i] * xn[k]:
                    continue  # parallel rows: no line
                for u in (e / ne, -e / ne):
                    s = X @ u
                    free = np.flatnonzero(np.abs(s) <= ZERO_TOL * xn)
                    base = s > 0
                    for combo in product((False, True), repeat=free.size):
                        base[free] = combo
                        j = index.get(base.tobytes())
                        if j is not None:
                            pats.append(j)
                            rays.append(u)
        order = np.argsort(pats, kind="stable")
        self.ray_pat = np.asarray(pats, dtype=np.intp)[order]
        self.rays = np.asarray(rays, dtype=float).reshape(-1, 3)[order]
        # every pair of distinct rays of one cone (a cone inside it)
        a_idx, b_idx = [], []
        bounds = np.searchsorted(self.ray_pat, np.arange(P + 1))
        for j in range(P):
            lo, hi = bounds[j], bounds[j + 1]
            for a in range(lo, hi):
                for b in range(a + 1, hi):
                    if self.rays[a] @ self.rays[b] < 1.0 - 1e-12:  # the same ray twice: skip
                        a_idx.append(a)
                        b_idx.append(b)
        self.pair_a = np.asarray(a_idx, dtype=np.intp)
        self.pair_b = np.asarray(b_idx, dtype=np.intp)
        self.pair_pat = self.ray_pat[self.pair_a]
        self.pair_cos = np.einsum("qi,qi->q", self.rays[self.pair_a], self.rays[self.pair_b])
        # facets: planes holding two distinct rays of the cone (a plane through one ray only
        # touches the cone there)
        on = np.abs(X @ self.rays.T) <= ZERO_TOL * xn[:, None]  # (n, M): ray a on plane i
        counts = np.zeros((n, P), dtype=np.intp)
        np.add.at(counts.T, self.ray_pat, on.T.astype(np.intp))
        self._facets = counts >= 2

    def facets(self) -> np.ndarray:
        r"""(n, P) booleans: the rows i whose inequality :math:`(2D_j-I)_{ii}x_i^\top u\ge0`
        defines a facet of :math:`K_j`; :math:`K_j` is the set where these rows alone hold, so a
        CVXPY program needs only these (about 4 of n per cone for d = 3).  All rows (every entry
        True) when ``method`` is ``'nnls'``."""
        return self._facets if self.method == "faces" else np.ones(self.D.shape, dtype=bool)

    def block_norms(self, r) -> np.ndarray:
        r"""The (2, P) dual norms at the residual ``r`` (n,): row 0 :math:`\nu^v_j`
        (:math:`\|\Pi_{K_j}(-g_j)\|`), row 1 :math:`\nu^w_j` (:math:`\|\Pi_{K_j}(g_j)\|`)."""
        r = as_float_array("r", r, 1, shape=(self.X.shape[0],))
        G = self.X.T @ (self.D * r[:, None])  # (d, P): g_j
        P = G.shape[1]
        out = np.zeros((2, P))
        if self.method == "nnls":
            for j in range(P):
                A = self.S[:, j, None] * self.X
                out[0, j] = cone_support(A, -G[:, j])
                out[1, j] = cone_support(A, G[:, j])
            return out
        inside, gn, p, al, be, val, plus, minus = self._face_candidates(G)
        out[0] = np.where(inside[0], gn, 0.0)
        out[1] = np.where(inside[1], gn, 0.0)
        np.maximum.at(out[1], self.ray_pat, p)
        np.maximum.at(out[0], self.ray_pat, -p)
        np.maximum.at(out[1], self.pair_pat[plus], val[plus])
        np.maximum.at(out[0], self.pair_pat[minus], val[minus])
        return out

    def _face_candidates(self, G):
        r"""The candidates both :meth:`block_norms` and :meth:`projections` maximise over (method
        ``'faces'``), for G (d, P) of columns :math:`g_j`: ``inside`` (2, P) whether
        :math:`-g_j` / :math:`g_j` lies in :math:`K_j` (its projection is itself, norm ``gn``);
        ``p`` :math:`e_a^\top g` on every extreme ray :math:`e_a`; on every 2-face spanned by rays
        a, b the coefficients ``al``, ``be`` of :math:`\Pi_{\mathrm{span}}g=al\,e_a+be\,e_b`,
        its norm ``val`` (the same for -g) and whether it lies in the face for g (``plus``) or
        for -g (``minus``)."""
        AG = self.S * (self.X @ G)  # (n, P): A_j g_j
        inside = np.stack([np.all(AG <= 0, axis=0), np.all(AG >= 0, axis=0)])
        gn = np.linalg.norm(G, axis=0)
        p = np.einsum("mi,im->m", self.rays, G[:, self.ray_pat])  # e_a^T g
        pa, pb, c = p[self.pair_a], p[self.pair_b], self.pair_cos
        den = 1.0 - c * c
        al, be = (pa - c * pb) / den, (pb - c * pa) / den
        val = np.sqrt(np.maximum(al * pa + be * pb, 0.0))
        plus, minus = (al >= 0) & (be >= 0), (al <= 0) & (be <= 0)
        return inside, gn, p, al, be, val, plus, minus

    def projections(self, r) -> np.ndarray:
        r"""The projections themselves, (2, P, d): :math:`\Pi_{K_j}(-g_j)` and :math:`\Pi_{K_j}(g_j)`
        (their norms are :meth:`block_norms`).  At an optimum every non-zero block :math:`v_j` is
        :math:`\|v_j\|\,\Pi_{K_j}(-g_j)/\beta` (its KKT condition), so these are the exact
        directions of the active neurons; blocks of neighbouring cones whose optimum lies on a
        shared ray get the same vector (the ray's) here, bit for bit."""
        r = as_float_array("r", r, 1, shape=(self.X.shape[0],))
        X = self.X
        G = X.T @ (self.D * r[:, None])  # (d, P)
        d, P = G.shape
        out = np.zeros((2, P, d))
        if self.method == "nnls":
            from scipy.optimize import nnls

            for j in range(P):
                A = self.S[:, j, None] * X
                for row, g in ((0, -G[:, j]), (1, G[:, j])):
                    mu, _ = nnls(A.T, -g, maxiter=50 * max(A.shape))
                    out[row, j] = g + A.T @ mu
            return out
        inside, gn, p, al, be, val, plus, minus = self._face_candidates(G)
        keys, vals, vecs = [], [], []

        def add(row, pat, val, vec):
            keys.append(row * P + pat)
            vals.append(val)
            vecs.append(vec)

        minus_in, plus_in = np.flatnonzero(inside[0]), np.flatnonzero(inside[1])
        add(0, minus_in, gn[minus_in], -G[:, minus_in].T)
        add(1, plus_in, gn[plus_in], G[:, plus_in].T)
        add(1, self.ray_pat, p, p[:, None] * self.rays)
        add(0, self.ray_pat, -p, -p[:, None] * self.rays)
        vec = al[:, None] * self.rays[self.pair_a] + be[:, None] * self.rays[self.pair_b]
        add(1, self.pair_pat[plus], val[plus], vec[plus])
        add(0, self.pair_pat[minus], val[minus], -vec[minus])
        keys, vals = np.concatenate(keys), np.concatenate(vals)
        vecs = np.concatenate(vecs)
        keep = vals > 0
        keys, vals, vecs = keys[keep], vals[keep], vecs[keep]
        order = np.lexsort((vals, keys))  # by block, then value: the last of each block wins
        last = order[np.r_[keys[order][1:] != keys[order][:-1], True]]
        out.reshape(2 * P, d)[keys[last]] = vecs[last]
        return out

    def dual_norm(self, r) -> float:
        r""":math:`\max_{\|u\|\le1}|r^\top(Xu)_+|` over these patterns: the largest block norm."""
        return float(self.block_norms(r).max(initial=0.0))


_CACHE: dict[str, ReluCones] = {}
_CACHE_SIZE = 8


def cones_for(X, D) -> ReluCones:
    """The :class:`ReluCones` of ``X`` and ``D``, shared by every fit on the same data and patterns
    (a path's 41 fits, a notebook's re-solves): built once, kept for the last 8 data sets, keyed
    by the bytes of both arrays."""
    X = as_float_array("X", X, 2)
    D = np.asarray(D, dtype=bool)
    h = hashlib.sha1()
    for a in (X, D):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    key = h.hexdigest()
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = ReluCones(X, D)
    return _CACHE[key]
