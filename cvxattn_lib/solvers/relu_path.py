r"""The exact ReLU program's regularisation path by a working set with exact KKT checks.

The program (scalar output, squared loss; :mod:`cvxattn_lib.convex.mlp`) has one block per pattern
:math:`D_j` and sign, :math:`v_j` and :math:`w_j`:

.. math:: \min\ \tfrac12\Big\|\sum_j D_jX(v_j-w_j)-y\Big\|^2+\beta\sum_j(\|v_j\|+\|w_j\|)
   \quad\text{s.t.}\quad v_j,w_j\in K_j=\{u:(2D_j-I)Xu\ge0\}.

**Optimality of a zero block.**  With the residual :math:`r=\hat y-y` and :math:`g_j=X^\top D_jr`,
:math:`v_j=0` is optimal for its block (the others fixed) iff
:math:`0\in g_j+\beta\,\partial\|\cdot\|(0)+N_{K_j}(0)`, i.e. iff

.. math:: \|\Pi_{K_j}(-g_j)\|_2\le\beta,\qquad\text{and for } w_j:\ \|\Pi_{K_j}(g_j)\|_2\le\beta

(:func:`cvxattn_lib.certificates.cone_support`; the largest of these over every block is
``arrangements.relu_dual_norm`` at :math:`r`).  So a solution of the program restricted to a set S
of blocks, padded with zeros, is optimal for the full program iff every block outside S passes this
test: the blocks in S satisfy their own optimality conditions by the restricted solve.

**Algorithm** (the group-lasso pattern of glmnet's strong rules, Tibshirani et al. 2012, *Strong
rules for discarding predictors in lasso-type problems*), on a grid walked from large β down:

1. :math:`\beta_{\max}=\max_b\|\Pi_{K}(\pm g_j)\|` at :math:`r=-y`; every grid point at or above it
   has the zero solution (certified by the same test, no solve);
2. at the next β, S = the blocks non-zero at the previous point (column norm above 1e-6 of the
   largest) plus those the *sequential strong rule* flags: dual norm at the previous residual
   :math:`\ge2\beta-\beta_{\mathrm{prev}}` (:math:`\beta_{\mathrm{prev}}=\beta_{\max}` after the
   zero points; :func:`screen`, whose ``slope`` generalises the rule);
3. solve the program restricted to S with CVXPY (:func:`cvxattn_lib.cvxpy_solve.solve`, through
   :func:`cvxattn_lib.mixer_tasks.quiet_solve`, which records an inaccurate first solve and its
   re-solve; each cone keeps only its facet rows, :meth:`.ReluCones.facets`: the same cone, about
   4 rows instead of n); compute every block's dual norm at its residual
   (:class:`~cvxattn_lib.convex.relu_cones.ReluCones`, all 2P at once);
4. blocks outside S with dual norm :math:`>\beta(1+\text{margin})` join S; back to 3 until none does;
5. if the restricted solve's own certified gap exceeds ``polish`` (1e-8), Clarabel solves it
   again with more iterative refinement and the better one is kept; then each non-zero block is
   snapped to its cone's exact maximiser and the magnitudes re-fitted (:func:`_snap`), kept only
   if the KKT check still passes and the certified gap does not grow past ``polish``.

The strong rule is a heuristic (it can miss a block); step 4 is exact, so a miss costs one more
restricted solve, never a wrong answer.  ``margin`` (default 1e-8) only keeps the round-off of the
restricted solve (solved to ~1e-10 relative) from adding blocks whose dual constraint is tight at
the optimum, which change nothing.  A block left out at dual norm :math:`\beta(1+\epsilon)`,
:math:`\epsilon\le` margin, costs the float64 certificate of :class:`~cvxattn_lib.convex.mlp.MLPFit`
(recomputed over *all* patterns) a relative gap of at most about :math:`\epsilon`: the dual point
:math:`r/(1+\epsilon)` is feasible and, since :math:`r^\top\hat y=-\beta R` at the restricted
optimum, its bound is below the value by about :math:`\epsilon\beta R\le\epsilon\,p^\star`.  That
certificate, not this loop, is what the path reports.

On notebook 01's spiral (n = 40, P = 1561 patterns, 3122 blocks, 41 slider positions) the sets hold
about 200-800 blocks and 1-2 solves per position suffice (``benchmarks/bench_slider_resolve.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import cvxpy as cp
import numpy as np
from scipy import sparse

from ..convex.relu_cones import ReluCones, cones_for
from ..validation import as_float_array, positive_scalar

MARGIN = 1e-8
POLISH = 1e-8  # a restricted solve whose own certified gap exceeds this is re-solved ...
# ... by Clarabel with more iterative refinement (its status can be "optimal" at a certified gap of
# 1e-6 at the smallest β of notebook 01; the refined solve reaches ~1e-9 there)
REFINE = dict(iterative_refinement_reltol=1e-14, iterative_refinement_abstol=1e-14,
              iterative_refinement_max_iter=50)


@dataclass
class PointInfo:
    """What the working set did at one grid point: ``blocks`` (final |S|, of 2P), ``solves``
    (restricted CVXPY solves; 0 at or above beta_max), ``added`` (blocks the KKT check added
    that the strong rule and the previous support missed), ``retried`` (some solve was re-run
    after an inaccurate first solve), ``max_outside`` (largest dual norm / beta outside S at the
    end: <= 1 + margin), ``seconds``, ``solver`` (the CVXPY solver's name; "none" for Z = 0)."""

    blocks: int
    solves: int
    added: int
    retried: bool
    max_outside: float
    seconds: float
    solver: str = "none"
    mask: np.ndarray | None = field(default=None, repr=False)  # the final S, (2, P)
    polished: int = 0  # re-solves with more iterative refinement (counted in ``solves``)
    snapped: bool = False  # directions replaced by the cones' exact maximisers (:func:`_snap`)

    def status(self, n_blocks: int) -> str:
        if self.solves == 0:
            return "optimal (Z = 0: beta >= beta_max)"
        return (f"optimal (working set {self.blocks} of {n_blocks} blocks, {self.solves} CVXPY "
                f"solve{'s' if self.solves > 1 else ''}"
                + (f", {self.added} added by the KKT check" if self.added else "")
                + (", re-solved after an inaccurate first solve" if self.retried else "")
                + (f", {self.polished} with more iterative refinement" if self.polished else "")
                + ")")


def screen(norms, beta_prev: float, beta: float, active, slope: float = 1.0) -> np.ndarray:
    """The working set at β from the previous point β_prev (> β): the blocks ``active`` (2, P)
    there plus those whose dual norm ``norms`` (2, P) there is at least
    β_prev - slope (β_prev - β) (slope 1: the sequential strong rule); never empty (the block of
    largest dual norm at least)."""
    mask = np.asarray(active, bool) | (norms >= beta_prev - slope * (beta_prev - beta))
    if not mask.any():
        mask[np.unravel_index(np.argmax(norms), norms.shape)] = True
    return mask


class _Restricted:
    """The ReLU program over the blocks ``mask`` (2, P), β a CVXPY Parameter (compiled once).
    Each block's cone constraint keeps only the rows that define a facet of its cone
    (:meth:`ReluCones.facets`): the same cone, a fraction of the rows."""

    def __init__(self, X, y, cones: ReluCones, mask):
        n, d = X.shape
        D, S, F = cones.D, cones.S, cones.facets()
        self.iv, self.iw = np.flatnonzero(mask[0]), np.flatnonzero(mask[1])
        self.beta = cp.Parameter(nonneg=True, value=1.0)
        pred, reg, cons, self.vars = 0, 0, [], []
        for idx, sign in ((self.iv, 1.0), (self.iw, -1.0)):
            if idx.size == 0:
                self.vars.append(None)
                continue
            U = cp.Variable((d, idx.size))
            self.vars.append(U)
            pred = pred + sign * cp.sum(cp.multiply(D[:, idx].astype(float), X @ U), axis=1)
            reg = reg + cp.sum(cp.norm(U, 2, axis=0))
            rows, cols = np.nonzero(F[:, idx])  # facet row i of block column c
            B = sparse.coo_matrix(((S[rows, idx[cols]][:, None] * X[rows]).ravel(),
                                   (np.repeat(np.arange(rows.size), d),
                                    (d * cols[:, None] + np.arange(d)).ravel())),
                                  shape=(rows.size, d * idx.size)).tocsr()
            cons.append(B @ cp.vec(U, order="F") >= 0)  # (2D_j - I)_ii x_i^T u_j >= 0
        self.problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(pred - y) + self.beta * reg),
                                  cons)

    def solve(self, beta, solver=None, **options):
        """The solution's blocks (``None`` for an empty side) and whether a re-solve happened."""
        from ..cvxpy_solve import solve
        from ..mixer_tasks import quiet_solve

        self.beta.value = beta
        _, retried = quiet_solve(solve, self.problem, solver=solver, **options)
        return [None if U is None else np.array(U.value, copy=True) for U in self.vars], retried

    def full(self, blocks, P):
        """The blocks as full (d, P) arrays V, W, zero outside the set."""
        d = self.vars[0].shape[0] if self.vars[0] is not None else self.vars[1].shape[0]
        V, W = np.zeros((d, P)), np.zeros((d, P))
        if blocks[0] is not None:
            V[:, self.iv] = blocks[0]
        if blocks[1] is not None:
            W[:, self.iw] = blocks[1]
        return V, W


def _outputs(X, D, V, W) -> np.ndarray:
    r"""The network's outputs :math:`\sum_jD_jX(v_j-w_j)` on the rows of X, (n,)."""
    return np.sum(D * (X @ (V - W)), axis=1)


def _evaluate(X, y, D, cones, V, W, mask, beta):
    """``(norms, gap)`` at the point (V, W): every block's dual norm at its residual
    (:meth:`ReluCones.block_norms`) and the certified relative gap of the program restricted to
    ``mask`` (:func:`_restricted_gap`)."""
    pred = _outputs(X, D, V, W)
    norms = cones.block_norms(pred - y)
    return norms, _restricted_gap(X, y, D, V, W, norms, mask, beta, pred)


def _restricted_gap(X, y, D, V, W, norms, mask, beta, pred=None) -> float:
    """The relative gap of the weak-duality certificate of the program restricted to ``mask``
    (:func:`cvxattn_lib.certificates.certify`, dual norm over the blocks in the set); ``pred``:
    the outputs at (V, W) when already computed."""
    from ..certificates import certify

    pred = _outputs(X, D, V, W) if pred is None else pred
    value = 0.5 * np.sum((pred - y) ** 2) + beta * (np.linalg.norm(V, axis=0).sum()
                                                    + np.linalg.norm(W, axis=0).sum())
    s = float(norms[mask].max())
    return certify(value, pred[:, None], y[:, None], "squared", beta, lambda _: s).rel_gap


def _snap(X, y, D, cones, V, W, norms, mask, beta, margin, polish):
    """Polish a converged point: each block with a non-zero column (above 1e-9 of the largest)
    gets its cone's exact maximiser at the residual as direction (:meth:`ReluCones.projections`:
    at an optimum a non-zero block points there), and the magnitudes a >= 0 are re-fitted with the
    directions fixed, min_a 1/2 ||Ha - y||^2 + beta sum_k a_k (H: the neurons' outputs
    on X, a small CVXPY problem); the rest are zero.  Kept only if the blocks outside the set still
    pass the KKT check and the certified gap over all blocks stays at most max(its value before,
    ``polish``).  Why: the interior-point solver leaves the copies of one neuron in neighbouring
    cones (an optimum on a ray they share) ~1e-7 apart, which the vertex LP of
    :func:`~cvxattn_lib.convex.mlp.prune_relu_neurons` cannot merge (so a figure would count them
    as several neurons); snapped, they coincide bit for bit.  Returns ``(V, W, norms, snapped)``."""
    from ..cvxpy_solve import solve
    from ..mixer_tasks import quiet_solve

    proj = cones.projections(_outputs(X, D, V, W) - y)
    pn = np.linalg.norm(proj, axis=2)
    cols = np.stack([np.linalg.norm(V, axis=0), np.linalg.norm(W, axis=0)])
    rows, js = np.nonzero((cols > 1e-9 * cols.max()) & (pn > 0))
    if rows.size == 0:
        return V, W, norms, False
    U = proj[rows, js] / pn[rows, js, None]  # (K, d) unit directions
    H = (1.0 - 2.0 * rows) * D[:, js] * (X @ U.T)  # (n, K): +v_j, -w_j
    a = cp.Variable(rows.size, nonneg=True)
    quiet_solve(solve, cp.Problem(cp.Minimize(0.5 * cp.sum_squares(H @ a - y) + beta * cp.sum(a))))
    av = np.maximum(np.asarray(a.value, float), 0.0)
    V2, W2 = np.zeros_like(V), np.zeros_like(W)
    for M, row in ((V2, 0), (W2, 1)):
        k = rows == row
        M[:, js[k]] = (U[k] * av[k, None]).T
    every = np.ones_like(mask)
    before = _restricted_gap(X, y, D, V, W, norms, every, beta)
    norms2, after = _evaluate(X, y, D, cones, V2, W2, every, beta)
    if np.all(norms2[~mask] <= beta * (1.0 + margin)) and after <= max(before, polish):
        return V2, W2, norms2, True
    return V, W, norms, False


def relu_path(X, Y, D, betas, margin: float = MARGIN, slope: float = 1.0,
              polish: float = POLISH, solver: str | None = None, status: Callable[[str], None] | None = None,
              order=None, cones: ReluCones | None = None):
    """The ReLU program's optimum at every β of ``betas`` (see the module for the algorithm).

    ``X`` (n, d), ``Y`` (n,) or (n, 1) targets, ``D`` (n, P) the patterns (all of them for the exact
    program), ``betas`` positive (any order).  ``margin``: the KKT check's relative allowance (see
    the module); ``polish``: a restricted solve whose own certified relative gap exceeds it is
    re-solved by Clarabel with more iterative refinement (:data:`REFINE`; the better of the two is
    kept); ``slope``: the screening rule keeps the blocks whose dual norm at the previous
    point is at least β_prev - slope (β_prev - β) (1: the sequential strong rule; smaller keeps
    fewer blocks and leaves more to the KKT check).  ``solver`` goes to
    :func:`cvxattn_lib.cvxpy_solve.solve`; ``status(text)`` is called before each point; ``order``
    iterates over the indices of ``betas`` from the largest β down (default
    ``argsort(-betas)``; a tqdm bar over it shows progress); ``cones``: the
    :class:`~cvxattn_lib.convex.relu_cones.ReluCones` of X and D, if built already.
    Returns ``(beta_max, Zs, infos)``: ``Zs[k] = [V, W]`` (d, P) each, the solution at
    ``betas[k]`` padded with zeros, and ``infos[k]`` its :class:`PointInfo`.
    """
    X = as_float_array("X", X, 2)
    n, d = X.shape
    y = as_float_array("Y", Y, (1, 2)).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"Y must have {n} entries (one per row of X), got {y.shape[0]}")
    D = np.asarray(D, dtype=bool)
    if D.ndim != 2 or D.shape[0] != n or D.shape[1] == 0:
        raise ValueError(f"D must have shape ({n}, P) with P >= 1, got {D.shape}")
    margin = positive_scalar("margin", margin)
    slope = positive_scalar("slope", slope)
    polish = positive_scalar("polish", polish)
    betas = np.array([positive_scalar("betas", b) for b in np.ravel(betas)], float)
    P = D.shape[1]
    cones = cones_for(X, D) if cones is None else cones
    norms = cones.block_norms(-y)
    bmax = float(norms.max())
    Zs, infos = [None] * betas.size, [None] * betas.size
    prev_beta, active = bmax, np.zeros((2, P), bool)
    program, pmask = None, None
    order = np.argsort(-betas, kind="stable") if order is None else order
    for done, k in enumerate(order):
        beta, t = float(betas[k]), time.perf_counter()
        if status is not None:
            status(f"solving β = {beta:.3g} ({done + 1} of {betas.size}) on a working set with CVXPY")
        if beta >= bmax:  # Z = 0 is optimal: every block passes the test at r = -y
            Zs[k] = [np.zeros((d, P)), np.zeros((d, P))]
            infos[k] = PointInfo(0, 0, 0, False, bmax / beta, time.perf_counter() - t)
            continue
        mask = screen(norms, prev_beta, beta, active, slope)
        solves, added, retried, polished = 0, 0, False, 0
        while True:
            if program is None or not np.array_equal(mask, pmask):
                program, pmask = _Restricted(X, y, cones, mask), mask.copy()
            blocks, again = program.solve(beta, solver)
            solves, retried = solves + 1, retried or again
            V, W = program.full(blocks, P)
            norms, gap = _evaluate(X, y, D, cones, V, W, mask, beta)
            name = program.problem.solver_stats.solver_name
            if gap > polish and name == "CLARABEL":  # same solver, more iterative refinement
                blocks2, again = program.solve(beta, name, **REFINE)
                solves, retried = solves + 1, retried or again
                V2, W2 = program.full(blocks2, P)
                norms2, gap2 = _evaluate(X, y, D, cones, V2, W2, mask, beta)
                if gap2 < gap:
                    V, W, norms, gap = V2, W2, norms2, gap2
                polished += 1
            viol = ~mask & (norms > beta * (1.0 + margin))
            if not viol.any():
                break
            added += int(viol.sum())
            mask = mask | viol
        V, W, norms, snapped = _snap(X, y, D, cones, V, W, norms, mask, beta, margin, polish)
        Zs[k] = [V, W]
        outside = norms[~mask]
        infos[k] = PointInfo(int(mask.sum()), solves, added, retried,
                             float(outside.max() / beta) if outside.size else 0.0,
                             time.perf_counter() - t, program.problem.solver_stats.solver_name,
                             mask, polished, snapped)
        col = np.stack([np.linalg.norm(V, axis=0), np.linalg.norm(W, axis=0)])
        active = col > 1e-6 * max(col.max(), np.finfo(float).tiny)
        prev_beta = beta
        if hasattr(order, "set_postfix"):
            order.set_postfix(beta=f"{beta:.3g}", blocks=int(mask.sum()), solves=solves)
    return bmax, Zs, infos
