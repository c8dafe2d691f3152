"""Exercises of notebook 04; worked solutions in ``notebooks/solutions/04_*.md``.

``DEEP`` lists the exercises that ask the reader to implement or to predict and then test:
the circular convolution by FFT, the Parseval weights of the rfft modes, the closed-form ridge
optimum of the FNO layer (Li et al.), and a prediction of its rank under heavy weight decay.
"""

from __future__ import annotations

import numpy as np

from ._base import Exercise, close, implement, number

RIDGE_BETA = 10.0  # the weight decay of the rank exercises
RANK_FLOOR = 1e-6  # a singular value counts when above it (the data are of order one)


def exercise_problem(seed: int = 0):
    """The data of the rank exercises: X (12, 6, 2) and Y (12, 6, 2), a rank-one circular
    convolution (kernel (0.5, 0.25, 0, 0, 0, 0.25), channel map [1, -0.5]^T [0.8, 0.6]) plus noise
    of standard deviation 0.05, as in the notebook's β explorer."""
    from ..convex.fno import circulant

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((12, 6, 2))
    kernel = np.array([0.5, 0.25, 0, 0, 0, 0.25])
    Y = np.einsum("tu,nua,ab->ntb", circulant(kernel), X, np.outer([1.0, -0.5], [0.8, 0.6]))
    return X, Y + 0.05 * rng.standard_normal(Y.shape)


def _count(svals) -> int:
    return int(sum(np.sum(np.asarray(v) > RANK_FLOOR) for v in svals))


def _mixer_lifted_entries() -> int:
    # Z = sum_j vec(A_j) vec(B_j)^T for s = 8 tokens, d = 3 channels, c = 2 outputs
    from ..convex.mixer import lift_mixer

    return int(lift_mixer(np.zeros((1, 8, 8)), np.zeros((1, 3, 2))).size)


def _circulant_penalty() -> float:
    # one kernel k = (3, 4, 0, 0) with channel map B = [[1]]: ||Z||_* = ||k vec(B)^T||_*
    from ..convex.fno import lift_fno

    return float(np.linalg.norm(lift_fno(np.array([[3.0, 4.0, 0.0, 0.0]]), np.ones((1, 1, 1))), "nuc"))


def _block_norm_of_identity() -> float:
    # the identity token map circ(delta_0) on s = 6 tokens, d = c = 1, priced by sum_w ||R_w||_*
    from ..convex.fno import circulant_to_spectral, lift_fno

    delta = np.eye(6)[:1]
    R = circulant_to_spectral(lift_fno(delta, np.ones((1, 1, 1))), d=1)
    return float(sum(np.linalg.norm(Rw, "nuc") for Rw in R))


def _test_circulant_fft(fn) -> tuple[bool, str]:
    from ..convex.fno import circulant_design, circulant_outputs

    rng = np.random.default_rng(4)
    for s, d, c in [(4, 2, 3), (5, 3, 1)]:
        X, Z = rng.standard_normal((3, s, d)), rng.standard_normal((s, d * c))
        want = circulant_outputs(X, Z)
        assert np.allclose(want, circulant_design(X) @ Z.reshape(s * d, c))  # the library, by matrix
        ok, msg = close(fn(X, Z), want, what=f"the outputs for s = {s}, d = {d}, c = {c}")
        if not ok:
            return ok, msg
    return True, "the outputs agree with cvxattn_lib.convex.fno.circulant_outputs for s = 4 and 5"


def _test_parseval_weights(fn) -> tuple[bool, str]:
    from ..convex.fno import parseval_multiplicity

    rng = np.random.default_rng(5)
    for s in range(1, 10):
        mu = np.asarray(fn(s), dtype=float)
        ok, msg = close(mu, parseval_multiplicity(s), what=f"mu for s = {s}")
        if not ok:
            return ok, msg
        y = rng.standard_normal(s)
        yt = np.fft.rfft(y, norm="ortho")
        if not np.isclose(np.sum(y**2), np.sum(mu * np.abs(yt) ** 2), rtol=1e-12):
            return False, f"Parseval fails with your weights at s = {s}"
    return True, "the weights match parseval_multiplicity and Parseval holds for s = 1 ... 9"


def _test_fno_ridge(fn) -> tuple[bool, str]:
    from ..convex.fno import fno_layer_ridge

    rng = np.random.default_rng(6)
    for s, d, c, beta in [(4, 2, 2, 0.5), (5, 3, 1, 2.0)]:
        X, Y = rng.standard_normal((7, s, d)), rng.standard_normal((7, s, c))
        got, want = np.asarray(fn(X, Y, beta), dtype=complex), fno_layer_ridge(X, Y, beta)
        if got.shape != want.shape:
            return False, f"R has shape {got.shape} for s = {s}, expected {want.shape} (K, d, c)"
        ok, msg = close(np.stack([got.real, got.imag]), np.stack([want.real, want.imag]),
                        what=f"R for s = {s}, beta = {beta}")
        if not ok:
            return ok, msg
    return True, "R agrees with cvxattn_lib.convex.fno.fno_layer_ridge (real and imaginary parts)"


def _ridge_rank() -> int:
    from ..convex.fno import fit_fno_layer

    return _count(fit_fno_layer(*exercise_problem(), RIDGE_BETA).singular_values())


def _block_rank() -> int:
    from ..convex.fno import fit_fno

    fit = fit_fno(*exercise_problem(), RIDGE_BETA, "spectral")
    return _count([np.linalg.svd(R, compute_uv=False) for R in fit.Z])


EXERCISES: dict[str, Exercise] = {
    "04.mixer_entries": number(_mixer_lifted_entries, "the lifted matrix of bilinear mixing has one "
                                 "row per token pair (t, u) and one column per channel pair (a, b)"),
    "04.circulant_penalty": number(_circulant_penalty, "Z = k vec(B)^T has rank one; its only "
                                     "singular value is ||k||_2 ||B||_F"),
    "04.block_norm_identity": number(_block_norm_of_identity, "the DFT of a delta is 1 at every "
                                       "mode; count the rfft modes of s = 6 tokens"),
    "04.circulant_fft": implement(_test_circulant_fft, "answer(X, Z): take rfft over tokens of X "
                                  "(n, s, d) and of Z reshaped to (s, d, c), multiply mode by mode "
                                  "(einsum 'nwa,wab->nwb'), irfft with n=s, reshape to (n s, c)"),
    "04.parseval_weights": implement(_test_parseval_weights, "answer(s) -> (s//2 + 1,) weights: a "
                                     "real signal's DFT has Y[s-w] = conj(Y[w]), so every rfft mode "
                                     "w with w != s - w (mod s) stands for two DFT modes"),
    "04.fno_ridge": implement(_test_fno_ridge, "answer(X, Y, beta) -> R (K, d, c) complex: per mode, "
                              "X~ = rfft(X, axis=1, norm='ortho')[:, w], the same for Y, and R_w = "
                              "(mu_w X~^H X~ + beta I)^{-1} mu_w X~^H Y~ (use the real parts at the "
                              "self-conjugate modes)"),
    "04.ridge_rank": number(_ridge_rank, "weight decay on one matrix per mode is ridge: it shrinks "
                              "each singular value by a factor, it never sets one to zero"),
    "04.block_rank": number(_block_rank, "solve cal.convex.fit_fno(X, Y, 10.0, 'spectral') and count "
                              "the singular values of all R_w above 1e-6"),
}

DEEP = ("04.circulant_fft", "04.parseval_weights", "04.fno_ridge", "04.ridge_rank", "04.block_rank")
