"""FNO-head convex programs: circulant lifting and FFTs, the Fourier basis, complex nuclear norms in
CVXPY, Parseval's decoupling of the spectral program with its block weights, optimum = best
non-convex run, certificate, recovery, the counter-example (block norm != circulant regulariser)."""

import cvxpy as cp
import numpy as np
import pytest

import cvxattn_lib as cal
from cvxattn_lib.convex.fno import (circulant, circulant_adjoint, circulant_design,
                                    circulant_outputs, circulant_to_spectral, lift_fno,
                                    parseval_multiplicity, spectral_adjoint, spectral_blocks,
                                    spectral_blocks_program, spectral_design, spectral_outputs)
from cvxattn_lib.losses import loss_value
from cvxattn_lib.nonconvex import FNOHead, fno_objective, train_fno
from cvxattn_lib.nonconvex.mixer import self_conjugate

BETAS = [0.01, 0.1, 1.0]
SEEDS = [0, 1]
MATCH, RECOVER, GAP, BELOW = 1e-6, 1e-8, 1e-7, 1e-10  # as in test_convex_mixer


def problem(seed, n=6, s=4, d=3, c=2):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, s, d)), rng.standard_normal((n, s, c))


def random_spectral(rng, s, d, c):
    """Random channel maps R (K, d, c), complex at paired modes, real at self-conjugate ones."""
    K = s // 2 + 1
    R = rng.standard_normal((K, d, c)) + 1j * rng.standard_normal((K, d, c))
    R[self_conjugate(s)] = R[self_conjugate(s)].real
    return R


@pytest.mark.parametrize("s", [4, 5])
def test_circulant_lifting_and_ffts(s):
    """circ(k)[t, u] = k[(t-u) mod s]; sum_j circ(k_j) X B_j = design @ Z.reshape(s d, c) = the FFT
    path = the torch head; the FFT adjoint is the design's transpose."""
    rng = np.random.default_rng(s)
    n, d, c, m = 3, 3, 2, 4
    X = rng.standard_normal((n, s, d))
    k, B = rng.standard_normal((m, s)), rng.standard_normal((m, d, c))
    C = circulant(k[0])
    assert C[2, 0] == k[0, 2] and C[0, 1] == k[0, s - 1] and np.allclose(C[1:, 1:], C[:-1, :-1])
    direct = np.stack([sum(circulant(k[j]) @ X[i] @ B[j] for j in range(m))
                       for i in range(n)]).reshape(n * s, c)
    Z = lift_fno(k, B)
    assert Z.shape == (s, d * c)
    for out in (circulant_design(X) @ Z.reshape(s * d, c), circulant_outputs(X, Z),
                FNOHead.from_weights({"k": k, "B": B}, "circulant").predict(X).reshape(n * s, c),
                spectral_outputs(X, circulant_to_spectral(Z, d))):
        np.testing.assert_allclose(out, direct, rtol=1e-12, atol=1e-12)
    V = rng.standard_normal((n * s, c))
    np.testing.assert_allclose(circulant_adjoint(X, V), (circulant_design(X).T @ V).reshape(s, -1),
                               rtol=1e-12, atol=1e-12)
    assert np.linalg.norm(Z, "nuc") <= 0.5 * (np.sum(k**2) + np.sum(B**2)) + 1e-12


@pytest.mark.parametrize("s", [4, 5])
def test_spectral_outputs_design_adjoint_and_torch(s):
    rng = np.random.default_rng(10 + s)
    n, d, c, m = 3, 2, 2, 3
    X = rng.standard_normal((n, s, d))
    K = s // 2 + 1
    W1 = rng.standard_normal((K, d, m)) + 1j * rng.standard_normal((K, d, m))
    W2 = rng.standard_normal((K, m, c)) + 1j * rng.standard_normal((K, m, c))
    W1[self_conjugate(s)], W2[self_conjugate(s)] = W1[self_conjugate(s)].real, W2[self_conjugate(s)].real
    R = W1 @ W2
    Xh = np.fft.rfft(X, axis=1)
    direct = np.fft.irfft(np.einsum("nwa,wab->nwb", Xh, R), n=s, axis=1).reshape(n * s, c)
    P = spectral_design(X)
    np.testing.assert_allclose(sum(np.real(Pw @ Rw) for Pw, Rw in zip(P, R)), direct, atol=1e-12)
    np.testing.assert_allclose(spectral_outputs(X, R), direct, atol=1e-12)
    net = FNOHead.from_weights({"W1": W1, "W2": W2, "s": s}, "spectral")
    np.testing.assert_allclose(net.predict(X).reshape(n * s, c), direct, atol=1e-12)
    w = net.weights()
    np.testing.assert_allclose(w["W1"], W1, rtol=1e-15)
    np.testing.assert_allclose(w["W2"], W2, rtol=1e-15)
    V = rng.standard_normal((n * s, c))
    for Gw, Pw in zip(spectral_adjoint(X, V), P):
        np.testing.assert_allclose(Gw, Pw.conj().T @ V, atol=1e-12)


def test_fourier_basis_gives_the_same_value():
    """||F Z||_* = ||Z||_* for the unitary DFT F, and the rows of sqrt(s) F Z are vec(R_w), the
    per-mode channel maps of the circulant head: the same program in the Fourier basis."""
    X, Y = problem(0)
    s, d = X.shape[1:]
    fit = cal.convex.fit_fno(X, Y, 0.1, "circulant")
    Z = fit.Z[0]
    FZ = np.fft.fft(Z, axis=0, norm="ortho")
    assert abs(np.linalg.norm(FZ, "nuc") - np.linalg.norm(Z, "nuc")) <= 1e-12 * np.linalg.norm(Z, "nuc")
    F = np.fft.fft(np.eye(s), norm="ortho")
    np.testing.assert_allclose(F.conj().T @ F, np.eye(s), atol=1e-12)
    R = circulant_to_spectral(Z, d)
    np.testing.assert_allclose(np.sqrt(s) * FZ[: s // 2 + 1], R.reshape(len(R), -1), atol=1e-12)
    # the fit's value recomputed from the Fourier-side variables
    value = loss_value(spectral_outputs(X, R), fit.Y, "squared") + 0.1 * np.linalg.norm(FZ, "nuc")
    assert abs(value - fit.value) <= 1e-12 * fit.value
    # and for d = c = 1 the circulant regulariser is an l2 norm over the spectrum (Parseval)
    z = np.random.default_rng(1).standard_normal((s, 1))
    r = np.fft.rfft(z[:, 0])
    mu = parseval_multiplicity(s)
    assert np.isclose(np.linalg.norm(z, "nuc"), np.sqrt(np.sum(mu * np.abs(r) ** 2) / s))


def test_complex_nuclear_norm_in_cvxpy():
    """The choice documented in fno.py: complex CVXPY variables with normNuc.  CVXPY's real
    embedding [[Re, -Im], [Im, Re]] has twice the complex nuclear norm; normNuc of a complex matrix
    is the complex one; and a complex prox problem solves to singular-value soft-thresholding."""
    rng = np.random.default_rng(2)
    C = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
    nuc = np.linalg.svd(C, compute_uv=False).sum()
    E = np.block([[C.real, -C.imag], [C.imag, C.real]])
    assert np.isclose(np.linalg.norm(E, "nuc"), 2 * nuc, rtol=1e-12)
    assert np.isclose(cp.normNuc(cp.Constant(C)).value, nuc, rtol=1e-9)
    lam = 0.7
    R = cp.Variable((3, 2), complex=True)
    value = cal.solve(cp.Problem(cp.Minimize(0.5 * cp.sum_squares(R - C) + lam * cp.normNuc(R))))
    U, sv, Vh = np.linalg.svd(C, full_matrices=False)
    shrunk = np.maximum(sv - lam, 0)
    expected = 0.5 * np.sum((sv - shrunk) ** 2) + lam * shrunk.sum()
    assert abs(value - expected) <= 1e-8 * expected
    np.testing.assert_allclose(R.value, (U * shrunk) @ Vh, atol=1e-5)


@pytest.mark.parametrize("s", [4, 5])
def test_parseval_decoupling_and_block_weights(s):
    """0.5 ||f(X) - Y||^2 = sum_w (mu_w/2) ||X~_w R_w - Y~_w||^2, so the spectral optimum is the sum
    of the per-mode programs with weights beta / mu_w relative to each block's orthonormal fit;
    forgetting mu_w (unit weights, i.e. every rfft mode weighted like its own full-DFT copy) solves
    a different problem."""
    X, Y = problem(s, s=s)
    n, _, d = X.shape
    c = Y.shape[2]
    rng = np.random.default_rng(s)
    R = random_spectral(rng, s, d, c)
    Xt, Yt, mu = spectral_blocks(X, Y)
    assert list(mu) == ([1, 2, 1] if s == 4 else [1, 2, 2])
    lhs = 0.5 * np.sum((spectral_outputs(X, R) - Y.reshape(n * s, c)) ** 2)
    rhs = sum(0.5 * mu[w] * np.sum(np.abs(Xt[w] @ R[w] - Yt[w]) ** 2) for w in range(len(mu)))
    assert abs(lhs - rhs) <= 1e-12 * lhs
    beta = 0.3
    fit = cal.convex.fit_fno(X, Y, beta, "spectral")
    blocks = spectral_blocks_program(X, Y, beta)
    assert abs(sum(v for v, _ in blocks) - fit.value) <= 1e-8 * fit.value
    out = spectral_outputs(X, np.stack([Rw for _, Rw in blocks]))
    np.testing.assert_allclose(out, fit.prediction(), atol=1e-5)
    # unit loss weights per rfft mode (mu forgotten): a different, wrong value
    wrong = 0.0
    for w, sc in enumerate(self_conjugate(s)):
        Rv = cp.Variable((d, c)) if sc else cp.Variable((d, c), complex=True)
        A, B = (Xt[w].real, Yt[w].real) if sc else (Xt[w], Yt[w])
        wrong += cal.solve(cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ Rv - B)
                                                  + beta * cp.normNuc(Rv))))
    assert abs(wrong - fit.value) > 1e-2 * fit.value


def check_fit(fit, runs, X, Y, beta, mixing, loss="squared"):
    cert = fit.certificate()
    # KKT: the dual norm is beta on the active directions (Z* != 0 on these problems), so at most
    # beta and, up to O(sqrt(GAP)) from the solution's error, equal to it
    assert fit.regulariser() > 0 and abs(cert["dual_norm"] / beta - 1) <= np.sqrt(GAP)
    assert -1e-9 <= cert["rel_gap"] <= GAP, cert
    w = fit.weights()
    assert abs(fno_objective(w, X, Y, beta, mixing, loss) - fit.value) <= RECOVER * fit.value
    objs = np.array([r.objective for r in runs])
    assert objs.min() >= cert["lower_bound"] * (1 - BELOW), (objs.min(), cert["lower_bound"])
    assert abs(objs.min() - fit.value) <= MATCH * fit.value, (objs.min(), fit.value)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("mixing", ["circulant", "spectral"])
def test_fno_equals_nonconvex(mixing, beta, seed):
    X, Y = problem(seed, s=4 + seed)  # even and odd s: with and without a Nyquist mode
    fit = cal.convex.fit_fno(X, Y, beta, mixing)
    runs = train_fno(X, Y, beta, mixing, m=fit.n_heads, restarts=2, seed=seed, max_iter=1000,
                     progress=False)
    check_fit(fit, runs, X, Y, beta, mixing)
    if mixing == "spectral":  # real weights at the self-conjugate modes, before and after training
        for w in [fit.weights()] + [r.weights for r in runs]:
            assert np.all(w["W1"][self_conjugate(X.shape[1])].imag == 0)
            assert np.all(w["W2"][self_conjugate(X.shape[1])].imag == 0)


@pytest.mark.parametrize("mixing", ["circulant", "spectral"])
def test_cross_entropy_on_pooled_logits(mixing):
    rng = np.random.default_rng(4)
    X, labels = rng.standard_normal((8, 4, 2)), rng.integers(0, 3, 8)
    fit = cal.convex.fit_fno(X, labels, 0.5, mixing, loss="cross_entropy")
    if mixing == "spectral":  # pooled logits see the mean over tokens, i.e. mode 0 only
        assert all(np.abs(R).max() <= 1e-6 for R in fit.Z[1:])
    runs = train_fno(X, labels, 0.5, mixing, m=fit.n_heads + 1, restarts=2, loss="cross_entropy",
                     progress=False)
    check_fit(fit, runs, X, labels, 0.5, mixing, loss="cross_entropy")


@pytest.mark.parametrize("seed,s,d,c", [(0, 4, 1, 1), (1, 4, 2, 2)])
def test_block_norm_is_not_the_circulant_regulariser(seed, s, d, c):
    """Counter-example.  The circulant and the spectral heads compute the same functions (any
    conjugate-symmetric R_w is sum_j rfft(k_j)[w] B_j), but weight decay on (k_j, B_j) gives
    ||Z||_* = ||[vec R_w]_w||_* / sqrt(s), not the block norm sum_w ||R_w||_*: the optima differ,
    neither solution is optimal for the other program, and the trained circulant head reaches its
    own optimum, not the block program's."""
    X, Y = problem(seed, s=s, d=d, c=c)
    n = X.shape[0]
    beta = 0.5
    circ = cal.convex.fit_fno(X, Y, beta, "circulant")
    block = cal.convex.fit_fno(X, Y, beta, "spectral")
    assert circ.certificate()["rel_gap"] <= GAP and block.certificate()["rel_gap"] <= GAP
    assert abs(circ.value - block.value) > 1e-2 * circ.value, (circ.value, block.value)
    Yf = Y.reshape(n * s, c)
    # the block program's solution as a circulant head (same outputs), priced by ||Z||_*
    Zb = np.fft.irfft(np.stack(block.Z), n=s, axis=0).reshape(s, d * c)
    np.testing.assert_allclose(circulant_outputs(X, Zb), block.prediction(), atol=1e-12)
    as_circ = loss_value(block.prediction(), Yf, "squared") + beta * np.linalg.norm(Zb, "nuc")
    # the circulant solution as per-mode maps, priced by the block norm
    Rc = circulant_to_spectral(circ.Z[0], d)
    as_block = (loss_value(circ.prediction(), Yf, "squared")
                + beta * sum(np.linalg.norm(R, "nuc") for R in Rc))
    assert as_circ > circ.value * (1 + 1e-3) and as_block > block.value * (1 + 1e-3)
    runs = train_fno(X, Y, beta, "circulant", m=circ.n_heads, restarts=2, seed=seed,
                     max_iter=1000, progress=False)
    best = min(r.objective for r in runs)
    assert abs(best - circ.value) <= MATCH * circ.value
    assert abs(best - block.value) > 1e-2 * block.value


@pytest.mark.parametrize("kwargs,match", [
    (dict(X=np.zeros((4, 3))), "X"),
    (dict(Y=np.zeros((5, 3, 1))), "Y"),
    (dict(beta=0.0), "beta"),
    (dict(beta=-0.5), "beta"),
    (dict(mixing="wavelet"), "mixing"),
    (dict(X=np.full((4, 3, 2), np.nan)), "X"),
    (dict(Y=np.full((4, 3, 1), np.inf)), "Y"),
    (dict(loss="hinge"), "loss"),
])
def test_bad_inputs_name_the_argument(kwargs, match):
    X, Y = problem(0, n=4, s=3, d=2, c=1)
    args = dict(X=X, Y=Y, beta=0.1, mixing="circulant") | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        cal.convex.fit_fno(**args)


def test_spectral_head_rejects_mismatched_weights():
    with pytest.raises(ValueError, match="W1"):
        FNOHead.from_weights({"W1": np.zeros((3, 2, 2)), "W2": np.zeros((3, 3, 1))}, "spectral")
    with pytest.raises(ValueError, match="mixing"):
        FNOHead(4, 2, 2, 1, mixing="wavelet")


# ---- the FNO layer of Li et al. (one channel matrix per retained mode): a ridge problem ----------

@pytest.mark.parametrize("s,modes", [(4, None), (5, None), (6, 2), (5, 1)])
@pytest.mark.parametrize("beta", [0.01, 1.0])
def test_fno_layer_ridge_closed_form_equals_cvxpy(s, modes, beta):
    """The per-mode ridge closed form (by Parseval) = the token-domain program solved by CVXPY
    (no Parseval), and it is stationary: P_w^H (f(X) - Y) + beta R_w = 0 at every retained mode."""
    from cvxattn_lib.convex.fno import fno_layer_objective, fno_layer_program, fno_layer_ridge

    X, Y = problem(s, s=s)
    R = fno_layer_ridge(X, Y, beta, modes)
    R_cvx, value = fno_layer_program(X, Y, beta, modes)
    np.testing.assert_allclose(R, R_cvx, atol=1e-6)
    assert fno_layer_objective(X, Y, R, beta) <= value + 1e-9 * value  # the closed form is optimal
    assert abs(fno_layer_objective(X, Y, R, beta) - value) <= 1e-7 * value
    kept = s // 2 + 1 if modes is None else modes
    grad = spectral_adjoint(X, spectral_outputs(X, R) - Y.reshape(-1, Y.shape[2]))
    for w in range(s // 2 + 1):
        if w < kept:
            np.testing.assert_allclose(grad[w] + beta * R[w], 0, atol=1e-10)
            if self_conjugate(s)[w]:
                assert np.all(R[w].imag == 0)
        else:
            assert np.all(R[w] == 0)


def test_fno_layer_is_ridge_not_low_rank():
    """Weight decay on the one-layer FNO shrinks every singular value of R_w but zeroes none: at a
    beta where the two-layer (block nuclear-norm) program switches modes off and lowers ranks, the
    FNO layer keeps every mode at full rank; as beta -> 0 it tends to least squares per mode."""
    from cvxattn_lib.convex.fno import fit_fno_layer

    X, Y = problem(3, n=8, s=6, d=2, c=2)
    beta = 10.0
    layer, block = fit_fno_layer(X, Y, beta), cal.convex.fit_fno(X, Y, beta, "spectral")
    sv_layer = np.array(layer.singular_values())
    sv_block = np.array([np.linalg.svd(R, compute_uv=False) for R in block.Z])
    assert np.all(sv_layer[:, -1] > 1e-3 * sv_layer.max())  # full rank at every mode
    on = sv_block > 1e-6 * sv_block.max()
    assert on.sum() < sv_layer.size and not np.all(on.any(axis=1))  # whole modes off, lower ranks
    Xt, Yt, mu = spectral_blocks(X, Y)
    tiny = fit_fno_layer(X, Y, 1e-10)
    for w, sc in enumerate(self_conjugate(6)):
        A, B = (Xt[w].real, Yt[w].real) if sc else (Xt[w], Yt[w])
        np.testing.assert_allclose(tiny.R[w], np.linalg.lstsq(A, B, rcond=None)[0], atol=1e-8)
    # shrinkage: every singular value decreases as beta grows
    small = np.array(fit_fno_layer(X, Y, 0.1).singular_values())
    assert np.all(sv_layer < small)
    assert layer.value == pytest.approx(
        cal.convex.fno.fno_layer_objective(X, Y, layer.R, beta), rel=1e-12)
    np.testing.assert_allclose(layer.prediction(), spectral_outputs(X, layer.R), atol=1e-14)


@pytest.mark.parametrize("modes", [0, 4, 1.5, True])
def test_fno_layer_bad_modes_are_named(modes):
    from cvxattn_lib.convex.fno import fit_fno_layer, fno_layer_program

    X, Y = problem(0, s=5)
    with pytest.raises(ValueError, match="modes"):
        fit_fno_layer(X, Y, 0.1, modes)
    with pytest.raises(ValueError, match="modes"):
        fno_layer_program(X, Y, 0.1, modes)


def test_fno_layer_bad_inputs_are_named():
    from cvxattn_lib.convex.fno import fno_layer_objective, fno_layer_ridge

    X, Y = problem(0)
    with pytest.raises((TypeError, ValueError), match="beta"):
        fno_layer_ridge(X, Y, -1.0)
    with pytest.raises(ValueError, match="R"):
        fno_layer_objective(X, Y, np.zeros((2, 3, 2)), 0.1)
