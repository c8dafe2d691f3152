r"""Solving at scale, piece by piece (notebook 06): the plain FISTA step, time to a certified gap,
seconds per iteration.

* :func:`fista_step`: one step of FISTA (Beck & Teboulle 2009) with the constant step 1/L for
  :math:`\min_Z f(Z)+\beta\|Z\|_*`, f with an L-Lipschitz gradient:
  :math:`Z_k=\operatorname{SVT}_{\beta/L}(Y_k-\nabla f(Y_k)/L)`,
  :math:`t_{k+1}=\tfrac12(1+\sqrt{1+4t_k^2})`, :math:`Y_{k+1}=Z_k+\tfrac{t_k-1}{t_{k+1}}(Z_k-Z_{k-1})`,
  from :math:`Y_1=Z_0`, :math:`t_1=1`; then :math:`F(Z_k)-p^\star\le 2L\|Z_0-Z^\star\|_F^2/(k+1)^2`.
  (:func:`cvxattn_lib.solvers.fista` adds backtracking on L and adaptive restarts.)
* :func:`time_to_certified_gap`: wall time (``time.perf_counter``) until a solver returns a point
  whose float64 weak-duality certificate proves a relative gap, for linear or gated-ReLU
  self-attention: CVXPY (``cal.convex.fit_self_attention``, the certificate counted in the time)
  or ``cal.solvers.fit_head`` (FISTA or Burer–Monteiro, stopped by that certificate).
* :func:`seconds_per_iteration`: the mean time of a FISTA iteration, from a fit's history.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..validation import choice, positive_int, positive_scalar
from .fista import svt

SOLVERS = ("cvxpy", "fista", "burer_monteiro")


def fista_step(Y, Z_prev, t: float, grad, L: float, beta: float):
    r"""One FISTA step (module docstring): returns ``(Z, Y_next, t_next)``.

    ``Y`` the extrapolated point :math:`Y_k`, ``Z_prev`` the previous iterate :math:`Z_{k-1}`,
    ``t`` = :math:`t_k` (start with ``Y = Z_prev = Z0``, ``t = 1``), ``grad(Z)`` the gradient of f,
    ``L`` a Lipschitz constant of it, ``beta`` the weight of the nuclear norm.  Numpy arrays, one
    matrix (p, q) or a stack (P, p, q) (then the penalty is the sum of the nuclear norms)."""
    L = positive_scalar("L", L)
    beta = positive_scalar("beta", beta)
    if not np.isfinite(t) or t < 1:
        raise ValueError(f"t must be a number >= 1 (t_1 = 1), got {t}")
    Z = svt(np.asarray(Y, dtype=float) - np.asarray(grad(Y), dtype=float) / L, beta / L)
    t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
    return Z, Z + ((t - 1.0) / t_next) * (Z - Z_prev), t_next


@dataclass(frozen=True)
class GapTiming:
    """What :func:`time_to_certified_gap` measured."""

    solver: str
    seconds: float  # median wall time over the repeats
    times: tuple  # every repeat's wall time (s)
    value: float  # objective of the returned point (float64)
    lower_bound: float  # certified lower bound on the optimum (float64 weak duality)
    rel_gap: float  # (value - lower_bound) / value
    tol: float
    iterations: int | None  # solver iterations (None for CVXPY)
    backend: str = ""  # the solver that ran: CVXPY's (e.g. 'CLARABEL'), or the fit_head method
    message: str = ""

    @property
    def reached(self) -> bool:
        """The certified relative gap is at most ``tol``."""
        return self.rel_gap <= self.tol


def time_to_certified_gap(X, Y, beta, solver: str = "fista", tol: float = 1e-6, repeats: int = 1,
                          activation: str = "linear", **options) -> GapTiming:
    """Median wall time over ``repeats`` runs of ``solver`` on the self-attention program of
    ``(X, Y, beta, activation)``, and the certified gap of the point it returns.

    ``'cvxpy'``: ``cal.convex.fit_self_attention`` (``options``: ``solver``, ``n_gates``, ...), which
    stops at its own tolerances; the time includes the certificate.  ``'fista'`` /
    ``'burer_monteiro'``: ``cal.solvers.fit_head(..., method=solver, tol=tol)``, which stops when
    its float64 certificate proves ``rel_gap <= tol`` (``options`` go to ``fit_head``; ``device``
    defaults to ``'cpu'``).  Whether the gap was reached is ``GapTiming.reached``; a solver's
    warning is kept in ``message``, not raised."""
    solver = choice("solver", solver, SOLVERS)
    tol = positive_scalar("tol", tol)
    repeats = positive_int("repeats", repeats)
    from ..convex.attention import fit_self_attention
    from .api import fit_head

    times, out = [], None
    for _ in range(repeats):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            t0 = time.perf_counter()
            if solver == "cvxpy":
                fit = fit_self_attention(X, Y, beta, activation=activation, **options)
                cert = fit.certificate()
                wall = time.perf_counter() - t0
                out = dict(value=cert["value"], lower_bound=cert["lower_bound"],
                           rel_gap=cert["rel_gap"], iterations=None, backend=fit.solver)
            else:
                opts = dict(device="cpu", progress=False) | options
                res = fit_head("self_attention", X, Y, beta, method=solver, activation=activation,
                               tol=tol, **opts)
                wall = time.perf_counter() - t0
                out = dict(value=res.value, lower_bound=res.lower_bound, rel_gap=res.rel_gap,
                           iterations=res.iterations, backend=res.method)
        times.append(wall)
        out["message"] = "; ".join(str(w.message) for w in caught)
    return GapTiming(solver=solver, seconds=float(np.median(times)), times=tuple(times), tol=tol, **out)


def seconds_per_iteration(fit) -> float:
    """Mean wall time of one iteration of a FISTA :class:`~cvxattn_lib.solvers.HeadFit`, from the
    first to the last entry of its history (so the set-up and the final certificate are left out;
    the periodic stopping tests are in)."""
    if getattr(fit, "method", None) != "fista":
        raise ValueError(f"fit must be a FISTA HeadFit (method='fista'), got method="
                         f"{getattr(fit, 'method', None)!r}")
    h = fit.history
    if len(h) < 2 or h[-1][0] == h[0][0]:
        raise ValueError("fit has fewer than two history entries: run more iterations than "
                         "check_every, or a smaller check_every")
    return (h[-1][3] - h[0][3]) / (h[-1][0] - h[0][0])
