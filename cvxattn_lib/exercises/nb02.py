"""Exercises of notebook 02; worked solutions in ``notebooks/solutions/02_*.md``."""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from .. import toydata
from ..certificates import certify
from ..convex import attention
from ..cvxpy_solve import solve
from ._base import Exercise, close, implement, number


def _lifted_entries() -> int:
    # d = 4 features, c = 3 outputs: Z = vec(W1) vec(W2)^T is d^2 x d c
    W1, W2 = np.ones((1, 4, 4)), np.ones((1, 4, 3))
    return int(attention.lift(W1, W2).size)


def _one_head_nuclear() -> float:
    # one head W1 = I_2, W2 = (1, 1)^T: ||Z||_* = ||vec W1|| ||vec W2||
    return float(np.linalg.norm(attention.lift(np.eye(2)[None], np.ones((1, 2, 1))), "nuc"))


def prox_nuclear_cvxpy(M: np.ndarray, tau: float) -> np.ndarray:
    """argmin_Z 1/2 ||Z - M||_F^2 + tau ||Z||_*, solved by CVXPY (the reference for 02.svt)."""
    Z = cp.Variable(M.shape)
    solve(cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Z - M) + tau * cp.normNuc(Z))))
    return np.asarray(Z.value, float)


def _test_svt(fn) -> tuple[bool, str]:
    import torch

    from ..solvers.fista import svt as library_svt

    rng = np.random.default_rng(3)
    low_rank = rng.standard_normal((5, 2)) @ rng.standard_normal((2, 4))
    cases = [(rng.standard_normal((4, 3)), 0.7), (rng.standard_normal((3, 5)), 1.3),
             (low_rank, 0.5), (rng.standard_normal((4, 4)), 100.0)]
    for k, (M, tau) in enumerate(cases):
        got = np.asarray(fn(M.copy(), tau), dtype=float)
        want = library_svt(torch.from_numpy(M)[None], tau)[0].numpy()
        ok, msg = close(got, want, rtol=1e-9, atol=1e-10, what=f"svt on case {k} ({M.shape}, tau={tau})")
        if not ok:
            return False, msg
    M, tau = cases[0]
    ok, msg = close(fn(M.copy(), tau), prox_nuclear_cvxpy(M, tau), rtol=1e-5, atol=1e-6,
                    what="svt against CVXPY's prox")
    if not ok:
        return False, msg
    return True, ("matches the library's svt (cvxattn_lib.solvers.fista) on 4 matrices to 1e-9 "
                  "and CVXPY's prox to 1e-5")


def denoise_matrix() -> np.ndarray:
    """The 6 x 4 matrix M of exercise 02.denoise_rank."""
    return np.random.default_rng(0).standard_normal((6, 4))


def _denoise_rank() -> int:
    # solved by CVXPY, not by the singular-value formula the reader is asked to predict with
    Z = prox_nuclear_cvxpy(denoise_matrix(), 1.5)
    s = np.linalg.svd(Z, compute_uv=False)
    return int(np.sum(s > 1e-6 * max(s[0], 1.0)))


def _exercise_toy():
    X, Y, _ = toydata.attention_teacher(n=6, seed=0)
    n, s, d = X.shape
    return X, Y.reshape(n * s, -1), attention.design(X, None), d


def _zero_heads_beta() -> float:
    X, Y, B, d = _exercise_toy()
    return float(np.linalg.norm((B.T @ Y).reshape(d * d, -1), 2))


def _lower_bound_at_zero() -> float:
    X, Y, B, d = _exercise_toy()
    beta = 1.0
    value = 0.5 * float(np.sum(Y**2))  # Z = 0: no heads, the whole target is error

    def dual_norm(V):
        return np.linalg.norm((B.T @ V).reshape(d * d, -1), 2)

    return certify(value, np.zeros_like(Y), Y, "squared", beta, dual_norm).lower_bound


EXERCISES: dict[str, Exercise] = {
    "02.lifted_entries": number(_lifted_entries, "Z = sum_j vec(W1_j) vec(W2_j)^T: how long "
                                  "are vec(W1) (d x d) and vec(W2) (d x c)?"),
    "02.max_heads": number(lambda: min(3 * 3, 3 * 2), "the fewest heads is the least rank of an "
                             "optimal Z, and a d^2 x dc matrix has rank at most min(d^2, dc); "
                             "here d = 3, c = 2"),
    "02.one_head_nuclear": number(_one_head_nuclear, "a rank-one matrix a b^T has one singular "
                                    "value, ||a|| ||b||"),
    "02.svt": implement(_test_svt, "write the optimality condition 0 in Z - M + tau * "
                          "(subdifferential of ||.||_* at Z) and try a Z with the same singular "
                          "vectors as M: what must happen to each singular value?"),
    "02.denoise_rank": number(_denoise_rank, "work out what the prox of beta ||.||_* does to "
                                "each singular value of M (exercise 02.svt), then count"),
    "02.zero_heads_beta": number(_zero_heads_beta, "write the optimality condition at Z = 0; the "
                                   "subdifferential of a norm at 0 is the unit ball of its dual "
                                   "norm, and A*(V) = (B^T V) reshaped to (d^2, d c)"),
    "02.lower_bound_at_zero": number(_lower_bound_at_zero, "which matrices are the extreme points "
                                       "of the nuclear-norm unit ball? That gives the dual norm, "
                                       "hence the feasible t; -L*(-t Y) is a concave quadratic "
                                       "in t"),
}

DEEP = ("02.svt", "02.denoise_rank", "02.zero_heads_beta", "02.lower_bound_at_zero")
