r"""What every lifted token-mixing program shares (attention, Mixer, FNO).

Each program has the form

.. math:: p^\star=\min_{Z_1,\dots,Z_P}\ L\Big(\sum_j\mathcal{A}_j(Z_j)\Big)+\beta\sum_j\|Z_j\|_*,

with :math:`\mathcal{A}_j` linear from the lifted matrix :math:`Z_j` to the token outputs (n s, c),
by default :math:`\mathcal{A}_j(Z_j)=D_j\,Z_j\mathrm{.reshape}(\cdot, c)` with a design matrix
:math:`D_j` (row-major reshape).  Its certificate needs the adjoint :math:`\mathcal{A}_j^*(V)`
reshaped like :math:`Z_j` and the dual norm :math:`\max_j\|\mathcal{A}_j^*(V)\|_2`.
For cross-entropy the token outputs are mean-pooled into per-sample logits.
"""

from __future__ import annotations

from functools import cached_property

import cvxpy as cp
import numpy as np

from ..certificates import Certificate, certify
from ..cvxpy_solve import solve
from ..losses import loss_value
from ..validation import as_float_array, positive_int
from .mlp import cvx_loss, factor, nuclear_norm


class LiftedFit:
    """Mixin for a fit with attributes ``loss``, ``beta``, ``shape`` (n, s, ...), ``Y`` (targets
    as passed to the loss), ``Z`` (list of lifted matrices) and ``designs`` (list of D_j), unless
    :meth:`outputs` and :meth:`adjoint` are overridden (e.g. by FFTs)."""

    @property
    def pooled(self) -> bool:
        """Mean-pooled logits (cross-entropy on labels) rather than token-level targets."""
        return self.loss == "cross_entropy"

    def _pool(self, M: np.ndarray) -> np.ndarray:
        n, s = self.shape[:2]
        return M.reshape(n, s, -1).mean(axis=1) if self.pooled else M

    def outputs(self) -> np.ndarray:
        """Token outputs (n s, c): sum_j D_j Z_j.reshape(., c)."""
        return sum(D @ Zj.reshape(D.shape[1], -1) for D, Zj in zip(self.designs, self.Z))

    def adjoint(self, V: np.ndarray) -> list[np.ndarray]:
        """A_j^*(V) for token-level V (n s, c), each reshaped like Z_j (row-major)."""
        return [(D.T @ V).reshape(Zj.shape) for D, Zj in zip(self.designs, self.Z)]

    def prediction(self) -> np.ndarray:
        """Outputs on the training data: (n s, c) token outputs, or (n, c) pooled logits."""
        return self._pool(self.outputs())

    def regulariser(self) -> float:
        """sum_j ||Z_j||_*."""
        return float(sum(np.linalg.norm(Zj, "nuc") for Zj in self.Z))

    @cached_property
    def value(self) -> float:
        """The optimum, L(prediction) + beta sum_j ||Z_j||_*, recomputed in float64."""
        return loss_value(self.prediction(), self.Y, self.loss) + self.beta * self.regulariser()

    def factored_heads(self, left: tuple, right: tuple):
        """Heads from the balanced SVD factors of each Z_j (rank cut at ``rank_tol`` times the
        largest singular value, at least 1): the left factors reshaped to (m, *left), the right
        ones to (m, *right), and each head's gate (m, ...) taken from ``gates`` (None if linear)."""
        top = max(np.linalg.norm(Zj, 2) for Zj in self.Z)
        lefts, rights, gates = [], [], []
        for j, Zj in enumerate(self.Z):
            U, V = factor(Zj, self.rank_tol * max(top, 1.0))
            r = U.shape[1]
            lefts.append(U.T.reshape(r, *left))
            rights.append(V.reshape(r, *right))
            if self.activation == "gated_relu":
                gates.append(np.repeat(self.gates[[j]], r, axis=0))
        return (np.concatenate(lefts), np.concatenate(rights),
                np.concatenate(gates) if gates else None)

    def singular_values(self) -> list[np.ndarray]:
        """Singular values of each lifted matrix Z_j (descending)."""
        return [np.linalg.svd(Zj, compute_uv=False) for Zj in self.Z]

    def dual_norm(self, V: np.ndarray) -> float:
        r""":math:`\max_j\|\mathcal{A}_j^*(V)\|_2` (V pooled back to tokens for cross-entropy)."""
        n, s = self.shape[:2]
        Vt = np.repeat(V, s, axis=0) / s if self.pooled else V
        return float(max(np.linalg.norm(G, 2) for G in self.adjoint(Vt)))

    def certify(self) -> Certificate:
        """Weak-duality certificate at this solution (see :mod:`cvxattn_lib.certificates`)."""
        return certify(self.value, self.prediction(), self.Y, self.loss, self.beta, self.dual_norm)

    def certificate(self) -> dict:
        """``value``, ``lower_bound``, ``gap``, ``rel_gap``, ``dual_norm`` (<= beta at optimum)."""
        return self.certify().as_dict()


def square_gates(k: int, gates=None, n_gates=None, seed: int = 0) -> np.ndarray:
    """Gate matrices (P, k, k): ``gates`` checked, else ``n_gates`` (default 8) N(0,1) draws."""
    if gates is not None:
        G = as_float_array("gates", gates, 3, shape=(None, k, k))
        if G.shape[0] == 0:
            raise ValueError(f"gates must hold at least one ({k}, {k}) gate, got shape (0, {k}, {k})")
        return G
    P = positive_int("n_gates", 8 if n_gates is None else n_gates)
    return np.random.default_rng(seed).standard_normal((P, k, k))


def pool_tokens(out: cp.Expression, n: int, s: int) -> cp.Expression:
    """Mean over the s tokens of each sample: (n s, c) -> (n, c)."""
    return np.kron(np.eye(n), np.full((1, s), 1.0 / s)) @ out


SMALL_CONE = 32  # p + q up to which ||Z||_* uses CVXPY's one (p+q)-sized PSD cone
TALL = 4  # ... and beyond it, the aspect ratio from which the small cones win: attention's
# d^2 x dc (ratio d/c) is faster as one cone (d = 6, c = 2: 2.3 s against 7.4 s), the Mixer's
# s^2 x dc as small cones


def lifted_nuclear_norm(Z) -> cp.Expression:
    r"""||Z||_* for a lifted variable Z (p, q), in the form that solves fastest.

    CVXPY's ``normNuc`` uses one PSD cone of size p + q, :math:`[[U, Z], [Z^\top, V]]\succeq0`;
    Clarabel factors it as a dense block of :math:`(p+q)^2/2` variables, so a tall Mixer matrix
    (:math:`s^2\times dc`) takes 7 s at s = 8 (64 x 2) and runs out of memory at s = 16.  For
    p + q > :data:`SMALL_CONE` and an aspect ratio of at least :data:`TALL` (tall, p >= q, else
    transposed) we use instead

    .. math:: \|Z\|_*=\min_{W\succeq0}\tfrac12\Big(\mathrm{tr}\,W+\sum_{i=1}^p z_iW^{-1}z_i^\top\Big)

    (rows :math:`z_i`, W q x q; the minimiser is :math:`W=(Z^\top Z)^{1/2}`, where both terms
    equal :math:`\sum\sigma`), i.e. p small PSD cones of size q + 1 (``matrix_frac``).  They
    all share W, which is what limits it: at q = dc = 16 (s = 8) Clarabel needs ~2.5 s per
    iteration and stops inaccurate (benchmarks/README.md); keep dc <= 8 for interactive use.
    """
    p, q = Z.shape
    if min(p, q) == 1 or p + q <= SMALL_CONE or max(p, q) < TALL * min(p, q):
        return nuclear_norm(Z)
    if p < q:
        Z, p, q = Z.T, q, p
    W = cp.Variable((q, q), PSD=True)
    return 0.5 * (cp.trace(W) + cp.sum(cp.hstack([cp.matrix_frac(Z[i, :], W) for i in range(p)])))


def lifted_program(designs, shapes, Yf, loss, beta, n, s, solver=None):
    """Solve min L(sum_j D_j Z_j.reshape(., c)) + beta sum_j ||Z_j||_* over real Z_j of the given
    ``shapes``; returns (Z list, solver value, problem)."""
    c = shapes[0][0] * shapes[0][1] // designs[0].shape[1]
    Zv = [cp.Variable(shape) for shape in shapes]
    out = sum(D @ cp.reshape(Zj, (D.shape[1], c), order="C") for D, Zj in zip(designs, Zv))
    if loss == "cross_entropy":
        out = pool_tokens(out, n, s)
    problem = cp.Problem(cp.Minimize(cvx_loss(out, Yf, loss)
                                     + beta * sum(lifted_nuclear_norm(Zj) for Zj in Zv)))
    value = solve(problem, solver=solver)
    return [np.array(Zj.value, float, copy=True) for Zj in Zv], value, problem
