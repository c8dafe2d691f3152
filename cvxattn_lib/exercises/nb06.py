"""Exercises of notebook 06; worked solutions in ``notebooks/solutions/06_*.md``.

The small problem of the number exercises: ``cal.toydata.attention_teacher(n=6, s=3, d=2, c=1,
heads=1, noise=0.1, seed=0)``, linear self-attention, squared loss, beta = 2.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import toydata
from ..solvers import HEADS, evaluate, fista_step, spectral_norms, svt
from ._base import Exercise, close, implement, number

BETA = 2.0


def _head():
    X, Y, _ = toydata.attention_teacher(n=6, s=3, d=2, c=1, heads=1, noise=0.1, seed=0)
    return HEADS["self_attention"].build(X, Y, "linear", None, None, 0, "squared", "cpu",
                                         torch.float64), Y


def _certificate_at_zero() -> float:
    head, _ = _head()
    return evaluate(head, BETA, Z=torch.zeros(head.shape, dtype=torch.float64)).certificate.lower_bound


def _beta_max() -> float:
    head, Y = _head()
    return spectral_norms(head, torch.as_tensor(-Y.reshape(-1, Y.shape[-1]))).value


def _test_svt(fn) -> tuple[bool, str]:
    rng = np.random.default_rng(6)
    for shape, tau in [((5, 3), 0.8), ((3, 6), 1.5), ((4, 4), 0.1), ((4, 2), 100.0)]:
        Z = rng.standard_normal(shape)
        ok, msg = close(fn(Z.copy(), tau), svt(Z, tau), what=f"SVT of a {shape} matrix at tau={tau}")
        if not ok:
            return ok, msg
    return True, "SVT agrees with cal.solvers.svt on four matrices (one thresholded to zero)"


def _test_fista_step(fn) -> tuple[bool, str]:
    rng = np.random.default_rng(60)
    A = rng.standard_normal((12, 6))
    T = rng.standard_normal((12, 4))

    def grad(Z):  # f(Z) = 1/2 ||A Z - T||^2
        return A.T @ (A @ Z - T)

    L = float(np.linalg.norm(A, 2) ** 2)
    Y, Zp = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    for t in (1.0, 2.5):
        got, want = fn(Y.copy(), Zp.copy(), t, grad, L, 0.7), fista_step(Y, Zp, t, grad, L, 0.7)
        if not isinstance(got, tuple) or len(got) != 3:
            return False, "return the tuple (Z, W_next, t_next)"
        for g, w, name in zip(got, want, ("Z", "W_next", "t_next")):
            ok, msg = close(g, w, what=f"{name} (t = {t})")
            if not ok:
                return ok, msg
    return True, "one step from two states matches cal.solvers.fista_step (Z, W_next and t_next)"


EXERCISES: dict[str, Exercise] = {
    "06.svt": implement(_test_svt, "svd with full_matrices=False, subtract tau from the singular "
                        "values, clip at zero, multiply back: U @ diag(max(s - tau, 0)) @ Vt"),
    "06.fista_step": implement(_test_fista_step, "Z = svt(W - grad(W) / Lf, beta / Lf); "
                               "t_next = (1 + sqrt(1 + 4 t^2)) / 2; "
                               "W_next = Z + ((t - 1) / t_next) (Z - Z_prev)"),
    "06.certificate_at_zero": number(_certificate_at_zero, "at Z = 0 the residual is G = -Y and "
                                     "A*(G) = (B^T G) reshaped to (d^2, d c); t = min(1, beta / "
                                     "||A*(G)||_2); lower bound -L*(tG) = t ||Y||^2 - t^2 ||Y||^2 / 2"),
    "06.beta_max": number(_beta_max, "Z = 0 is optimal when -A*(grad L(0)) = A*(Y) lies in "
                          "beta times the unit ball of the dual norm (the spectral norm)"),
}
DEEP = ("06.svt", "06.fista_step", "06.certificate_at_zero", "06.beta_max")
