"""Exercises of notebook 00 (the tour); worked solutions in ``notebooks/solutions/00_tour.md``.

All three are about the tour's linear two-layer network, whose convex program is
:math:`\\min_Z \\tfrac12\\|XZ-Y\\|_F^2+\\beta\\|Z\\|_*`. ``DEEP`` lists the exercises that ask the
reader to derive, implement or predict-then-test (here: all of them).
"""

from __future__ import annotations

import numpy as np

from .. import certificates, toydata
from ..convex import fit_mlp
from ._base import Exercise, close, implement, number

TOUR_TOY = dict(n=30, d=5, c=4, seed=0)  # the regression problem of the tour's last cell
RANK_BETA = 2.0                          # the beta of exercise 00.rank_orthonormal


def orthonormal_toy() -> tuple[np.ndarray, np.ndarray]:
    """The tour's X replaced by an orthonormal basis Q of its columns (Q^T Q = I), and its Y."""
    X, Y = toydata.random_regression(**TOUR_TOY)
    return np.linalg.qr(X)[0], Y


def _rank_orthonormal() -> int:
    # the library's answer: solve the convex program and count the neurons it recovers
    Q, Y = orthonormal_toy()
    return fit_mlp(Q, Y, RANK_BETA, activation="linear").n_neurons


def _test_recover(fn) -> tuple[bool, str]:
    """The reader's ``fn(Z)`` must return ``(W1, W2)`` with W1 @ W2 = Z, penalty
    (||W1||_F^2 + ||W2||_F^2) / 2 = ||Z||_* and rank(Z) neurons (columns of W1)."""
    rng = np.random.default_rng(3)
    for shape, rank in (((5, 4), 2), ((3, 6), 3), ((4, 4), 1)):
        Z = rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))
        W1, W2 = (np.asarray(a, dtype=float) for a in fn(Z.copy()))
        if W1.ndim != 2 or W2.ndim != 2 or W1.shape[0] != shape[0] or W2.shape[1] != shape[1]:
            return False, f"for Z {shape} expected W1 ({shape[0]}, m) and W2 (m, {shape[1]})"
        ok, msg = close(W1 @ W2, Z, rtol=1e-9, atol=1e-9, what=f"W1 @ W2 for Z {shape}")
        if not ok:
            return False, msg
        ok, msg = close(0.5 * (np.sum(W1**2) + np.sum(W2**2)), np.linalg.norm(Z, "nuc"), rtol=1e-9,
                        what=f"the penalty (||W1||^2 + ||W2||^2)/2 for Z {shape} (vs ||Z||_*)")
        if not ok:
            return False, msg + " (balance the factors: the same singular values on both sides)"
        if W1.shape[1] != rank:
            return False, f"Z {shape} has rank {rank}, your network has {W1.shape[1]} neurons"
    return True, "W1 W2 = Z, penalty = ||Z||_* and rank(Z) neurons on 3 random low-rank Z"


def _test_certificate(fn) -> tuple[bool, str]:
    """The reader's ``fn(X, Y, Z, beta)`` must return the weak-duality lower bound of the residual
    of Z, scaled to dual feasibility, the same as :func:`cvxattn_lib.certificates.certify`."""
    rng = np.random.default_rng(4)
    for n, d, c, beta in ((12, 3, 2, 0.5), (20, 4, 3, 2.0), (8, 2, 2, 50.0)):
        X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, c))
        Z = 0.3 * rng.standard_normal((d, c))
        value = 0.5 * np.sum((X @ Z - Y) ** 2) + beta * np.linalg.norm(Z, "nuc")
        want = certificates.certify(value, X @ Z, Y, "squared", beta,
                                    lambda V, X=X: np.linalg.norm(X.T @ V, 2)).lower_bound
        got = float(fn(X.copy(), Y.copy(), Z.copy(), beta))
        if got > value * (1 + 1e-9):
            return False, f"your bound {got:.6g} exceeds the objective {value:.6g}: not a lower bound"
        ok, msg = close(got, want, rtol=1e-8, atol=1e-10, what=f"the lower bound for n={n}, beta={beta}")
        if not ok:
            return False, msg + " (scale V = XZ - Y by the best t in [0, beta / ||X^T V||_2])"
    return True, "agrees with cal.certificates.certify on 3 random problems"


EXERCISES: dict[str, Exercise] = {
    "00.rank_orthonormal": number(_rank_orthonormal,
                                  "with Q^T Q = I, 1/2||QZ - Y||^2 = 1/2||Z - Q^T Y||^2 + const, so Z* is "
                                  "singular-value thresholding of Q^T Y at beta: count the singular "
                                  "values of Q^T Y above beta = 2"),
    "00.recover": implement(_test_recover,
                            "take the SVD Z = U S V^T, keep the singular values above a tolerance, and "
                            "split sqrt(S) between the two layers: W1 = U sqrt(S), W2 = sqrt(S) V^T"),
    "00.certificate": implement(_test_certificate,
                                "the dual is max_V -1/2||V||^2 - <V, Y> s.t. ||X^T V||_2 <= beta "
                                "(spectral norm: the dual norm of the nuclear norm); take V = XZ - Y, "
                                "scale it by t in [0, beta / ||X^T V||_2] maximising the dual objective"),
}

DEEP = ("00.rank_orthonormal", "00.recover", "00.certificate")
