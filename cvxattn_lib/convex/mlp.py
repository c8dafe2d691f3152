r"""Two-layer networks with weight decay as convex programs.

Objective of the network (sum over samples):
:math:`\tfrac12\sum_i\|f(x_i)-y_i\|^2 + \tfrac\beta2\sum_j(\|w_{1j}\|^2+\|w_{2j}\|^2)`.
Rescaling each neuron turns the penalty into :math:`\beta\sum_j\|w_{1j}\|\,\|w_{2j}\|`, and grouping
neurons gives the convex programs

* linear:      :math:`\min_Z L(XZ) + \beta\|Z\|_*` (the variational form of the nuclear norm,
  Recht, Fazel & Parrilo 2010),
* gated ReLU:  :math:`\min_{Z_j} L(\sum_j D_j X Z_j) + \beta\sum_j\|Z_j\|_*` (fixed gates; the
  program of eq. (8) of Sahiner et al., ICML 2022, and of Mishkin, Sahiner & Pilanci 2022),
* ReLU (c=1):  :math:`\min L(\sum_j D_j X(v_j-w_j)) + \beta\sum_j(\|v_j\|+\|w_j\|)` s.t.
  :math:`(2D_j-I)Xv_j\ge0,\ (2D_j-I)Xw_j\ge0` (Pilanci & Ergen 2020; the vector-output,
  cone-constrained nuclear-norm form is Sahiner et al., ICLR 2021),

each equal to the non-convex optimum once the network has at least as many neurons as the
solution's rank (linear, gated) or number of non-zero groups (ReLU, with every pattern enumerated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cvxpy as cp
import numpy as np

from .. import arrangements
from ..certificates import Certificate, certify
from ..cvxpy_solve import solve
from ..losses import loss_value, one_hot
from ..nonconvex.mlp import ACTIVATIONS, TwoLayerNet
from ..validation import (as_float_array, choice, positive_int, positive_scalar, seed_value,
                          targets)
from .relu_cones import cones_for


def nuclear_norm(Z) -> cp.Expression:
    """||Z||_* as a CVXPY expression (the Euclidean norm when Z is a vector: no SDP needed)."""
    return cp.norm(Z, "fro") if min(Z.shape) == 1 else cp.normNuc(Z)


def cvx_loss(U: cp.Expression, Y: np.ndarray, loss: str) -> cp.Expression:
    """L(U) as a CVXPY expression: squared (Y (n, c)) or softmax cross-entropy (labels (n,))."""
    if loss == "squared":
        return 0.5 * cp.sum_squares(U - Y)
    E = one_hot(Y, U.shape[1])
    return cp.sum(cp.log_sum_exp(U, axis=1)) - cp.sum(cp.multiply(E, U))


def factor(Z: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Balanced factors of Z: :math:`Z = AB` with :math:`A = U\sqrt S`, :math:`B = \sqrt S V^\top`,
    keeping singular values above ``tol``; then :math:`\tfrac12(\|A\|^2+\|B\|^2) = \|Z\|_*`."""
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    keep = s > tol
    r = np.sqrt(s[keep])
    return U[:, keep] * r, r[:, None] * Vt[keep]


@dataclass
class MLPFit:
    """The solution of a two-layer convex program, with recovery and certificate."""

    activation: str
    loss: str
    beta: float
    X: np.ndarray = field(repr=False)
    Y: np.ndarray = field(repr=False)
    D: np.ndarray = field(repr=False)  # (n, P) patterns (gated ReLU / ReLU), or (n, 0)
    G: np.ndarray = field(repr=False)  # (d, P) gates that generated the patterns
    Z: list = field(repr=False)  # linear: [Z]; gated: [Z_j]; relu: [v_j - w_j] pairs as (V, W)
    solver_value: float
    status: str
    solver: str
    rank_tol: float = 1e-8

    # -- the primal point -------------------------------------------------------------------
    def prediction(self) -> np.ndarray:
        """f(X) on the training data, from the convex variables."""
        X = self.X
        if self.activation == "linear":
            return X @ self.Z[0]
        if self.activation == "gated_relu":
            return sum(self.D[:, [j]] * (X @ Zj) for j, Zj in enumerate(self.Z))
        V, W = self.Z
        return np.sum(self.D * (X @ (V - W)), axis=1, keepdims=True)

    def regulariser(self) -> float:
        """R(Z): nuclear norms (linear, gated) or group norms (ReLU)."""
        if self.activation == "relu":
            V, W = self.Z
            return float(np.linalg.norm(V, axis=0).sum() + np.linalg.norm(W, axis=0).sum())
        return float(sum(np.linalg.norm(Zj, "nuc") for Zj in self.Z))

    @cached_property
    def value(self) -> float:
        """The optimum: L(prediction) + beta R(Z), recomputed in float64 from the solution."""
        return loss_value(self.prediction(), self.Y, self.loss) + self.beta * self.regulariser()

    # -- recovery ---------------------------------------------------------------------------
    def weights(self, prune: bool = True) -> dict[str, np.ndarray]:
        """Non-convex weights reaching :attr:`value`: ``W1`` (d, m), ``W2`` (m, c), and ``G``
        (d, m) for gated ReLU (neuron j computes ``1{X G[:, j] >= 0} * (X W1[:, j])``).

        ReLU solutions from interior-point solvers spread over many patterns; with ``prune`` the
        neurons are reduced to at most n by :func:`prune_relu_neurons` (same outputs, same value).
        """
        d = self.X.shape[1]
        scale = self.rank_tol * max(1.0, self._largest())
        if self.activation == "relu":
            V, W = self.Z
            cols, outs = [], []
            for M, sign in ((V, 1.0), (W, -1.0)):
                norms = np.linalg.norm(M, axis=0)
                for j in np.flatnonzero(norms > scale):
                    cols.append(M[:, j] / np.sqrt(norms[j]))
                    outs.append(sign * np.sqrt(norms[j]))
            W1 = np.stack(cols, axis=1) if cols else np.zeros((d, 0))
            W2 = np.asarray(outs, dtype=float).reshape(-1, 1)
            return prune_relu_neurons(self.X, W1, W2) if prune else {"W1": W1, "W2": W2}
        c = self.Z[0].shape[1]
        W1s, W2s, Gs = [], [], []
        for j, Zj in enumerate(self.Z):
            A, B = factor(Zj, scale)
            W1s.append(A)
            W2s.append(B)
            if self.activation == "gated_relu":
                Gs.append(np.repeat(self.G[:, [j]], A.shape[1], axis=1))
        out = {"W1": np.concatenate(W1s, axis=1) if W1s else np.zeros((d, 0)),
               "W2": np.concatenate(W2s, axis=0) if W2s else np.zeros((0, c))}
        if self.activation == "gated_relu":
            out["G"] = np.concatenate(Gs, axis=1) if Gs else np.zeros((d, 0))
        return out

    def _largest(self) -> float:
        if self.activation == "relu":
            return float(max(np.linalg.norm(M, axis=0).max(initial=0.0) for M in self.Z))
        return float(max(np.linalg.norm(Zj, 2) for Zj in self.Z))

    @property
    def n_neurons(self) -> int:
        """Neurons in the recovered network: the rank(s) of the solution, or its non-zero groups."""
        return self.weights()["W1"].shape[1]

    def network(self) -> TwoLayerNet:
        """The recovered non-convex network (torch, float64)."""
        return TwoLayerNet.from_weights(self.weights(), self.activation)

    def predict(self, X) -> np.ndarray:
        """The recovered network's output on new inputs X (m, d)."""
        X = as_float_array("X", X, 2, shape=(None, self.X.shape[1]))
        return self.network().predict(X)

    # -- certificate ------------------------------------------------------------------------
    def dual_norm(self, V: np.ndarray) -> float:
        r"""The dual-norm constraint value for a dual point V (n, c): must be <= beta.

        linear :math:`\|X^\top V\|_2`; gated :math:`\max_j\|X^\top D_jV\|_2`; ReLU
        :math:`\max_j\max_\pm \|\Pi_{K_j}(\pm X^\top D_j v)\|` with
        :math:`K_j=\{u:(2D_j-I)Xu\ge0\}` (every pattern at once, :mod:`.relu_cones`: exact from
        the cones' faces when d = 3, one NNLS per block otherwise).
        """
        X = self.X
        if self.activation == "linear":
            return float(np.linalg.norm(X.T @ V, 2))
        if self.activation == "gated_relu":
            return float(max(np.linalg.norm(X.T @ (self.D[:, [j]] * V), 2)
                             for j in range(self.D.shape[1])))
        return cones_for(X, self.D).dual_norm(V[:, 0])

    def certify(self) -> Certificate:
        """The weak-duality certificate at this solution (see :mod:`cvxattn_lib.certificates`)."""
        return certify(self.value, self.prediction(), self.Y, self.loss, self.beta, self.dual_norm)

    def certify_point(self, prediction, value: float) -> Certificate:
        r"""The weak-duality certificate of *any* network on the same data: its predictions
        ``prediction`` (n,) or (n, c) on X and its objective ``value`` (e.g. a trained run's).

        The dual point is the network's own scaled residual, so no convex solve is needed: the
        lower bound holds for the program over these patterns (every network of any width when
        ReLU patterns are all enumerated), and ``gap`` bounds how far ``value`` is above it.
        """
        U = as_float_array("prediction", prediction, (1, 2))
        n = self.X.shape[0]
        if U.shape[0] != n:
            raise ValueError(f"prediction must have {n} rows (one per sample), got {U.shape}")
        U = U.reshape(n, -1)
        if self.loss == "squared" and U.shape != self.Y.shape:
            raise ValueError(f"prediction must have shape {self.Y.shape}, got {U.shape}")
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"value must be a finite objective value, got {value}")
        return certify(value, U, self.Y, self.loss, self.beta, self.dual_norm)

    def certificate(self) -> dict:
        """``value``, ``lower_bound`` (certified lower bound on the optimum over these patterns),
        ``gap``, ``rel_gap``, ``dual_norm`` (<= beta at the optimum) and ``dual_scale``."""
        return self.certify().as_dict()


def prune_relu_neurons(X: np.ndarray, W1: np.ndarray, W2: np.ndarray) -> dict[str, np.ndarray]:
    r"""Keep the outputs of a scalar-output ReLU network on X with at most n neurons, never
    raising its penalty (Caratheodory).

    With unit directions :math:`u_k` and signs :math:`s_k`, the network is
    :math:`\sum_k a_k s_k (Xu_k)_+` with penalty :math:`\beta\sum_k a_k`, :math:`a_k\ge0`.  The
    linear program :math:`\min \sum_k a_k` s.t. :math:`\sum_k a_k s_k (Xu_k)_+ = \hat y` has the
    current weights as a feasible point, and a vertex solution (simplex) uses at most n of them,
    often far fewer.
    """
    from scipy.optimize import linprog

    if W1.shape[1] <= 1:
        return {"W1": W1, "W2": W2}
    a = np.linalg.norm(W1, axis=0) * np.abs(W2[:, 0])  # |w2_k| ||w1_k|| (balanced: penalty/beta)
    U = W1 / np.linalg.norm(W1, axis=0)
    H = np.maximum(X @ U, 0.0) * np.sign(W2[:, 0])
    lp = dict(A_eq=H, b_eq=H @ a, bounds=(0, None), method="highs-ds")
    res = linprog(np.ones(U.shape[1]), **lp)
    if res.status != 0:  # HiGHS's presolve can call this feasible LP (a is a point) infeasible,
        # or stop on numerical difficulties: without presolve it solves
        res = linprog(np.ones(U.shape[1]), options={"presolve": False}, **lp)
    if res.status != 0 or res.fun > a.sum() * (1 + 1e-9):
        return {"W1": W1, "W2": W2}  # keep the unpruned network rather than a worse one
    keep = res.x > 1e-12 * res.x.max()
    r = np.sqrt(res.x[keep])
    return {"W1": U[:, keep] * r, "W2": (np.sign(W2[keep, 0]) * r)[:, None]}


def _patterns(X, activation, gates, n_gates, seed):
    d = X.shape[1]
    if gates is not None:
        gates = as_float_array("gates", gates, 2, shape=(d, None))
        if gates.shape[1] == 0:
            raise ValueError(f"gates must have at least one column, got shape {gates.shape}")
        return arrangements.patterns_from_gates(X, gates)
    if n_gates is not None:
        n_gates = positive_int("n_gates", n_gates)
        return arrangements.patterns_from_gates(X, arrangements.sample_gates(d, n_gates, seed))
    if activation == "relu":
        return arrangements.enumerate_patterns(X)
    return arrangements.patterns_from_gates(X, arrangements.sample_gates(d, 32, seed))


class MLPProgram:
    """The convex program for fixed data and patterns, built once.

    ``beta`` is a non-negative CVXPY ``Parameter``, so :meth:`fit` for a new beta reuses the
    compiled problem (what a slider needs).  Arguments as :func:`fit_mlp`, without ``beta``.
    """

    def __init__(self, X, Y, activation: str = "relu", gates=None, n_gates=None, seed: int = 0,
                 loss: str = "squared", solver: str | None = None):
        X = as_float_array("X", X, 2)
        seed = seed_value("seed", seed)
        self.activation = choice("activation", activation, ACTIVATIONS)
        self.loss = choice("loss", loss, ("squared", "cross_entropy"))
        Y, c = targets(Y, X.shape[0], loss)
        n, d = X.shape
        if activation == "relu" and (c != 1 or loss != "squared"):
            raise ValueError("activation='relu' is the exact program for a scalar output with the "
                             f"squared loss (Y of shape (n,) or (n, 1)), got c={c}, loss={loss!r}; "
                             "use activation='gated_relu' for several outputs or cross-entropy")
        self.X, self.Y, self.solver = X, Y, solver
        self.beta = cp.Parameter(nonneg=True, value=1.0)
        if activation == "linear":
            self.D, self.G = np.zeros((n, 0), dtype=bool), np.zeros((d, 0))
            self.variables = [cp.Variable((d, c))]
            U = X @ self.variables[0]
            reg = nuclear_norm(self.variables[0])
            cons = []
        else:
            self.D, self.G = _patterns(X, activation, gates, n_gates, seed)
            if self.D.shape[1] == 0:
                raise ValueError("the gates give no active pattern on X (every neuron would be "
                                 "off); pass other gates or more n_gates")
            U, reg, cons, self.variables = _gated_or_relu(X, self.D.astype(float), c, activation)
        self.problem = cp.Problem(cp.Minimize(cvx_loss(U, Y, loss) + self.beta * reg), cons)

    def fit(self, beta, **solver_options) -> MLPFit:
        """Solve for this ``beta`` (options such as ``warm_start`` go to the solver) and return
        the :class:`MLPFit`."""
        self.beta.value = positive_scalar("beta", beta)
        solver_value = solve(self.problem, solver=self.solver, **solver_options)
        Zs = [np.array(Zj.value, dtype=np.float64, copy=True) for Zj in self.variables]
        return MLPFit(activation=self.activation, loss=self.loss, beta=float(self.beta.value),
                      X=self.X, Y=self.Y, D=self.D, G=self.G, Z=Zs, solver_value=solver_value,
                      status=self.problem.status,
                      solver=self.problem.solver_stats.solver_name)


def _gated_or_relu(X, Df, c, activation):
    """Prediction, regulariser, constraints and variables of the gated-ReLU or ReLU program."""
    n, d = X.shape
    if activation == "gated_relu":
        Zv = [cp.Variable((d, c)) for _ in range(Df.shape[1])]
        U = sum(cp.multiply(Df[:, [j]] @ np.ones((1, c)), X @ Zj) for j, Zj in enumerate(Zv))
        return U, sum(nuclear_norm(Zj) for Zj in Zv), [], Zv
    Vv, Wv = cp.Variable((d, Df.shape[1])), cp.Variable((d, Df.shape[1]))
    S = 2.0 * Df - 1.0
    U = cp.reshape(cp.sum(cp.multiply(Df, X @ (Vv - Wv)), axis=1), (n, 1), order="C")
    reg = cp.sum(cp.norm(Vv, 2, axis=0)) + cp.sum(cp.norm(Wv, 2, axis=0))
    cons = [cp.multiply(S, X @ Vv) >= 0, cp.multiply(S, X @ Wv) >= 0]
    return U, reg, cons, [Vv, Wv]


def fit_mlp(X, Y, beta, activation: str = "relu", gates=None, n_gates=None, seed: int = 0,
            loss: str = "squared", solver: str | None = None) -> MLPFit:
    """Solve the convex program equivalent to a two-layer network with weight decay ``beta``.

    ``X`` (n, d); ``Y`` (n, c) targets (squared loss) or integer labels (n,) (cross-entropy).
    ``activation``: ``'linear'``, ``'gated_relu'`` or ``'relu'`` (scalar output, squared loss).
    Patterns come from ``gates`` (d, P) if given, else from ``n_gates`` gates sampled with ``seed``,
    else: ReLU enumerates every pattern (exact), gated ReLU samples 32 gates.
    Returns an :class:`MLPFit` with ``value``, ``weights()`` and ``certificate()``.
    """
    beta = positive_scalar("beta", beta)
    return MLPProgram(X, Y, activation, gates=gates, n_gates=n_gates, seed=seed, loss=loss,
                      solver=solver).fit(beta)


def solve_relu_dual(X, y, beta, D=None, solver: str | None = None) -> tuple[float, np.ndarray]:
    r"""The finite dual of the scalar-output ReLU network, solved directly as a cone program.

    .. math:: d^\star=\max_v\ -\tfrac12\|v\|^2-v^\top y\quad\text{s.t.}\quad
       \|X^\top D_jv+A_j^\top\mu_j^+\|_2\le\beta,\ \|-X^\top D_jv+A_j^\top\mu_j^-\|_2\le\beta,
       \ \mu_j^\pm\ge0,

    with :math:`A_j=(2D_j-I)X`: by cone duality
    :math:`\max_{u\in K_j,\|u\|\le1}g^\top u=\min_{\mu\ge0}\|g+A_j^\top\mu\|`, so these constraints
    say :math:`\max_{\|u\|\le1}|v^\top(Xu)_+|\le\beta` over the patterns ``D`` (n, P) (default:
    all, :func:`cvxattn_lib.arrangements.enumerate_patterns`).  It has 2nP multipliers, so it is
    for small toys.  Returns ``(d_star, v_star)``; at the optimum :math:`v^\star=\hat y-y`, the
    residual of the primal solution, and :math:`d^\star=p^\star`.
    """
    X = as_float_array("X", X, 2)
    n = X.shape[0]
    y = as_float_array("y", y, (1, 2)).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"y must have {n} entries (one per row of X), got {y.shape[0]}")
    beta = positive_scalar("beta", beta)
    D = arrangements.enumerate_patterns(X)[0] if D is None else np.asarray(D, dtype=bool)
    if D.ndim != 2 or D.shape[0] != n:
        raise ValueError(f"D must have shape ({n}, P), got {D.shape}")
    Df = D.astype(float)
    S = 2.0 * Df - 1.0
    v = cp.Variable(n)
    mu_plus = cp.Variable(Df.shape, nonneg=True)
    mu_minus = cp.Variable(Df.shape, nonneg=True)
    G = X.T @ cp.multiply(Df, cp.reshape(v, (n, 1), order="C") @ np.ones((1, Df.shape[1])))
    cons = [cp.norm(G + X.T @ cp.multiply(S, mu_plus), 2, axis=0) <= beta,
            cp.norm(-G + X.T @ cp.multiply(S, mu_minus), 2, axis=0) <= beta]
    problem = cp.Problem(cp.Maximize(-0.5 * cp.sum_squares(v) - v @ y), cons)
    solve(problem, solver=solver)
    v_star = np.array(v.value, dtype=np.float64)
    return float(-0.5 * v_star @ v_star - v_star @ y), v_star
