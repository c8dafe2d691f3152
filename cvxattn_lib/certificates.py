r"""Optimality certificates from weak duality, shared by every convex program.

Every program here has the form :math:`p^\star = \min_Z L(\mathcal{A}(Z)) + \beta R(Z)` with a
norm-like regulariser R (nuclear norms, group norms, cone-restricted norms).  Fenchel duality gives,
for any :math:`V` with :math:`R^\circ(\mathcal{A}^*V) \le \beta` (the dual-norm constraint),

.. math:: p^\star \ \ge\ -L^*(V).

At the optimum :math:`V^\star = \nabla L(\mathcal{A}(Z^\star))` is feasible and the bound is tight.  So
from any primal point we take :math:`V = t\,\nabla L`, with :math:`t` the largest scale keeping
:math:`V` feasible (or the best one below it), and report the lower bound and the relative gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .losses import best_dual_scale, loss_gradient, neg_conjugate
from .validation import as_float_array, positive_scalar


@dataclass(frozen=True)
class Certificate:
    """What a dual-feasible point proves about a primal point."""

    value: float  # primal objective at the returned point (an upper bound on p*)
    lower_bound: float  # -L*(t V): a certified lower bound on p*
    dual_norm: float  # R°(A* grad L): at most beta at the optimum
    beta: float
    dual_scale: float  # the t used

    @property
    def gap(self) -> float:
        """``value - lower_bound`` (>= 0 up to round-off)."""
        return self.value - self.lower_bound

    @property
    def rel_gap(self) -> float:
        """``(value - lower_bound) / |value|``: how far from the global optimum, relatively."""
        return self.gap / max(abs(self.value), np.finfo(float).tiny)

    def as_dict(self) -> dict:
        """The fields plus ``gap`` and ``rel_gap`` as a plain dict."""
        return {"value": self.value, "lower_bound": self.lower_bound, "gap": self.gap,
                "rel_gap": self.rel_gap, "dual_norm": self.dual_norm, "beta": self.beta,
                "dual_scale": self.dual_scale, "dual_norm_over_beta": self.dual_norm / self.beta}


def certify(value: float, U: np.ndarray, Y: np.ndarray, loss: str, beta: float,
            dual_norm_of) -> Certificate:
    """Certificate for a primal point with prediction ``U`` and objective ``value``.

    ``dual_norm_of(V)`` must return :math:`R^\\circ(\\mathcal{A}^* V)` for the program at hand.
    """
    V = loss_gradient(U, Y, loss)
    s = float(dual_norm_of(V))
    t_max = np.inf if s == 0.0 else beta / s
    t = best_dual_scale(V, Y, loss, t_max)
    lower = neg_conjugate(t * V, Y, loss)
    return Certificate(value=float(value), lower_bound=float(lower), dual_norm=s, beta=beta,
                       dual_scale=t)


def cone_support(A: np.ndarray, g: np.ndarray) -> float:
    r""":math:`\max\{\langle g, v\rangle : Av \ge 0,\ \|v\|_2 \le 1\}`, the norm of g projected on
    the cone :math:`K = \{v : Av \ge 0\}`.

    By Moreau's decomposition :math:`g = \Pi_K g + \Pi_{K^\circ} g` with
    :math:`K^\circ = \{-A^\top\mu : \mu \ge 0\}`, so :math:`\|\Pi_K g\| = \min_{\mu\ge0}\|g + A^\top\mu\|`,
    a non-negative least-squares problem solved exactly by an active-set method.
    """
    from scipy.optimize import nnls

    _, rnorm = nnls(A.T, -g, maxiter=50 * max(A.shape))
    return float(rnorm)


@dataclass(frozen=True)
class NuclearFace:
    r"""What the dual says about every optimum of :math:`\min_Z L(\mathcal{A}(Z))+\beta\|Z\|_*`.

    Fields (``D`` = :math:`\mathcal{A}^*(\nabla L)` at the solution, ``U``, ``W`` the rank(Z)
    singular vectors of Z):

    * ``rank``: rank(Z) of the given solution;
    * ``dual_over_beta``: the singular values of D / beta (all at most 1 at an optimum);
    * ``alignment``: :math:`\|U^\top DW/\beta+I\|_{\max}` plus the cross terms
      :math:`\|U^\top D(I-WW^\top)\|,\ \|(I-UU^\top)DW\|` over beta (0 at an exact optimum);
    * ``off_active``: :math:`\|(I-UU^\top)D(I-WW^\top)\|_2/\beta`, the largest dual singular value
      off the active directions (strict complementarity: < 1);
    * ``injectivity``: smallest singular value of :math:`\Delta\mapsto\mathcal{A}(U\Delta W^\top)`
      on symmetric rank(Z) x rank(Z) matrices (Frobenius-orthonormal basis) over the largest one
      (1.0 when rank(Z) = 0).

    ``unique(margin, tol)``: off_active <= 1 - max(margin, 10 alignment) and injectivity > tol
    (the factor 10 keeps the test well above the error with which the solver met the optimality
    conditions).
    """

    rank: int
    dual_over_beta: np.ndarray
    alignment: float
    off_active: float
    injectivity: float

    def thresholds(self, margin: float = 1e-3, tol: float = 1e-6) -> dict:
        """The thresholds :meth:`unique` applies: ``margin`` (the complementarity margin
        1 - off_active must be at least max(margin, 10 alignment)) and ``injectivity`` (the
        injectivity ratio must exceed ``tol``)."""
        margin, tol = positive_scalar("margin", margin), positive_scalar("tol", tol)
        return {"margin": max(margin, 10.0 * self.alignment), "injectivity": tol}

    def unique(self, margin: float = 1e-3, tol: float = 1e-6) -> bool:
        """Both sufficient conditions for a unique optimum hold, with the given margins: a
        numerical test on an approximate solution (see :meth:`thresholds`), not a proof."""
        need = self.thresholds(margin, tol)
        return bool(1.0 - self.off_active >= need["margin"]
                    and self.injectivity > need["injectivity"])


def nuclear_face(Z, dual, apply, beta, rank_tol: float = 1e-7) -> NuclearFace:
    r"""Which optima :math:`\min_Z L(\mathcal{A}(Z))+\beta\|Z\|_*` has, from one solution ``Z``.

    ``Z`` (p, q) a solution, ``dual`` (p, q) :math:`D=\mathcal{A}^*(\nabla L(\mathcal{A}Z))`,
    ``apply(Z) -> array`` the linear map :math:`\mathcal{A}`, ``beta`` > 0; the rank of Z counts
    singular values above ``rank_tol`` times the largest (and above ``rank_tol``).

    The maths (derived in this collection).  With L strictly convex (squared loss) every optimum
    has the same prediction :math:`\mathcal{A}Z`, hence the same D, and Z' is optimal iff it has
    that prediction and :math:`G=-D/\beta\in\partial\|Z'\|_*`, i.e. :math:`\|G\|_2\le1` and
    :math:`\langle G,Z'\rangle=\|Z'\|_*`.  Writing :math:`Z'=\sum\sigma_ia_ib_i^\top`,
    :math:`\langle G,Z'\rangle=\sum\sigma_ia_i^\top Gb_i\le\sum\sigma_i` with equality iff
    :math:`Gb_i=a_i`: Z' lives on the singular directions of G at singular value 1.  If those are
    exactly the r = rank(Z) directions U, W of Z (``off_active`` < 1, strict complementarity)
    then every optimum is :math:`UMW^\top` with :math:`M\succeq0`, Z is :math:`UM^\star W^\top`
    with :math:`M^\star\succ0`, and the optimum is unique iff no symmetric :math:`\Delta\ne0` has
    :math:`\mathcal{A}(U\Delta W^\top)=0` (``injectivity`` > 0); otherwise moving
    :math:`M^\star` along such a :math:`\Delta` to the boundary of the PSD cone gives an optimum
    of lower rank (the penalty :math:`\mathrm{tr}\,M` does not change: :math:`\mathrm{tr}\,\Delta
    =\langle G,U\Delta W^\top\rangle=-\langle\nabla L,\mathcal{A}(U\Delta W^\top)\rangle/\beta=0`).
    So rank(Z) is an upper bound on the least rank of an optimum, equal to it when both
    conditions hold.
    """
    Z = as_float_array("Z", Z, 2)
    D = as_float_array("dual", dual, 2, shape=Z.shape)
    beta = positive_scalar("beta", beta)
    if not callable(apply):
        raise TypeError(f"apply must be a function Z -> A(Z), got {type(apply).__name__}")
    U, s, Wt = np.linalg.svd(Z)
    top = float(s[0]) if s.size else 0.0
    r = int(np.sum(s > rank_tol * max(top, 1.0)))
    Ur, Wr = U[:, :r], Wt[:r].T
    Pu, Pw = np.eye(Z.shape[0]) - Ur @ Ur.T, np.eye(Z.shape[1]) - Wr @ Wr.T
    off = Pu @ D @ Pw
    off_active = float(np.linalg.norm(off, 2)) / beta if off.size else 0.0
    alignment = 0.0
    if r:
        alignment = max(float(np.abs(Ur.T @ D @ Wr / beta + np.eye(r)).max()),
                        float(np.linalg.norm(Ur.T @ D @ Pw, 2)) / beta,
                        float(np.linalg.norm(Pu @ D @ Wr, 2)) / beta)
    injectivity = 1.0
    if r:
        columns = []
        for i in range(r):
            for j in range(i, r):
                E = np.zeros((r, r))
                E[i, j] = E[j, i] = 1.0 if i == j else np.sqrt(0.5)
                columns.append(np.asarray(apply(Ur @ E @ Wr.T), dtype=float).ravel())
        sv = np.linalg.svd(np.stack(columns, axis=1), compute_uv=False)
        injectivity = float(sv[-1] / sv[0]) if sv[0] > 0 else 0.0
        if len(columns) > sv.size:  # more unknowns than equations: a null direction exists
            injectivity = 0.0
    return NuclearFace(rank=r, dual_over_beta=np.linalg.svd(D, compute_uv=False) / beta,
                       alignment=alignment, off_active=off_active, injectivity=injectivity)
