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
