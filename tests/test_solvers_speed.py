"""The fast FISTA path of cal.solvers (stacked design built once, SVT through the Gram, upper-bounded
dual norm in the stopping test, zero test) against the reference path and the CVXPY programs, in
float64; beta_max and beta given as a fraction of it.  No wall-clock asserts: the speed is measured
by benchmarks/bench_gated_heads.py."""

import importlib
import warnings

import numpy as np
import pytest
import torch

import cvxattn_lib as cal
from convex_heads import build, convex_fit
from cvxattn_lib.solvers.certify import zero_gradient

REFERENCE = {"design": False, "prox": "svd", "zero_test": False}
MATCH = 1e-6  # optimum of one path vs the other / vs CVXPY, relative (both certified to 1e-9)
BELOW = 1e-9  # a certified lower bound may exceed the CVXPY value only by round-off


def tokens(seed, n=12, s=4, d=2, c=3, loss="cross_entropy"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, s, d))
    Y = rng.integers(0, c, n) if loss == "cross_entropy" else rng.standard_normal((n, s, c))
    return X, Y


def samples(seed, n=30, d=3, c=3, loss="cross_entropy"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = rng.integers(0, c, n) if loss == "cross_entropy" else rng.standard_normal((n, c))
    return X, Y


CASES = [  # kind, activation, loss, problem, n_gates
    ("mlp", "gated_relu", "cross_entropy", samples, 4),
    ("self_attention", "linear", "cross_entropy", tokens, None),
    ("self_attention", "gated_relu", "cross_entropy", tokens, 2),
    ("self_attention", "gated_relu", "squared", tokens, 2),
    ("mixer", "linear", "cross_entropy", tokens, None),
    ("mixer", "gated_relu", "cross_entropy", tokens, 2),
    ("mixer", "gated_relu", "squared", tokens, 3),
    ("fno", "circulant", "cross_entropy", tokens, None),
    ("fno", "spectral", "cross_entropy", tokens, None),
]
IDS = [f"{k}-{a}-{lo}" for k, a, lo, _, _ in CASES]


@pytest.mark.parametrize("kind,activation,loss,make,n_gates", CASES, ids=IDS)
def test_stacked_design_is_the_forward_map(kind, activation, loss, make, n_gates):
    """stacked_design() @ Z.reshape(P m, c) = forward(Z), in the loss's rows (pooled or not)."""
    X, Y = make(0, loss=loss)
    head = build(kind, X, Y, activation, loss, n_gates)
    if head.complex:
        pytest.skip("the spectral FNO head has no real design (it keeps the autograd path)")
    Z = torch.randn(*head.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    B = head.stacked_design(batch_size=5)  # batches: the design is built in pieces
    assert B.shape[0] * B.shape[1] == head.design_entries()
    via = B @ Z.reshape(-1, head.out_columns())
    np.testing.assert_allclose(via.numpy(), head.predict(Z).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,activation,loss,make,n_gates", CASES, ids=IDS)
def test_fast_path_reaches_the_reference_and_cvxpy_optimum(kind, activation, loss, make, n_gates):
    """Both paths certify 1e-9 and agree on the optimum; their lower bounds never exceed the CVXPY
    optimum (float64 certificates bracket it)."""
    X, Y = make(2, loss=loss)
    bmax = cal.solvers.beta_max(kind, X, Y, activation=activation, n_gates=n_gates, loss=loss,
                                device="cpu")
    beta = 0.2 * bmax
    common = dict(activation=activation, n_gates=n_gates, loss=loss, device="cpu", tol=1e-9,
                  max_iter=50000, progress=False)
    fast = cal.solvers.fit_head(kind, X, Y, beta, **common)
    ref = cal.solvers.fit_head(kind, X, Y, beta, **common, **REFERENCE)
    assert fast.converged and ref.converged
    # squared loss: the Gram blocks (both paths); else the design, except the complex head
    assert fast.info["design"] == (not fast.head.complex and not fast.info["gram"])
    assert not ref.info["design"] and ref.info["gram"] == fast.info["gram"]
    assert fast.info["prox"] == ("svd" if fast.head.complex else "gram") and ref.info["prox"] == "svd"
    assert abs(fast.value - ref.value) <= MATCH * ref.value
    # the certificate holds for the point returned: recomputed, it is the same
    again = cal.solvers.evaluate(fast.head, beta, Z=torch.as_tensor(np.stack(fast.Z)).to(
        fast.head.zdtype()))
    assert abs(again.certificate.lower_bound - fast.lower_bound) <= 1e-10 * abs(fast.value)
    cvx = convex_fit(kind, X, Y, beta, activation, loss, n_gates)
    p_cvx = cvx.value
    for fit in (fast, ref):
        assert fit.lower_bound <= p_cvx + BELOW * abs(p_cvx)
        assert abs(fit.value - p_cvx) <= MATCH * abs(p_cvx) + 1e-6  # CVXPY's own accuracy


def gated_mixer_fast_and_reference(data, beta, n_gates, max_iter):
    """The gated Mixer fitted from the same start by the fast path and the reference path
    (:data:`REFERENCE`), stopping tests every 10 iterations, ``max_iter`` iterations exactly."""
    X, Y = data
    common = dict(activation="gated_relu", n_gates=n_gates, loss="cross_entropy", device="cpu", tol=1e-14,
                  max_iter=max_iter, check_every=10, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # max_iter reached on purpose
        return (cal.solvers.fit_head("mixer", X, Y, beta, **common),
                cal.solvers.fit_head("mixer", X, Y, beta, **common, **REFERENCE))


def test_fast_and_reference_paths_take_the_same_steps():
    """Same start, same rule: after 40 iterations the iterates agree to round-off (mixer gated,
    the head whose fast path the benchmark times), with history at the same iterations."""
    fast, ref = gated_mixer_fast_and_reference(tokens(3, n=16, s=4, d=3, c=4), 0.05, n_gates=3, max_iter=40)
    assert [h[0] for h in fast.history] == [h[0] for h in ref.history] == [10, 20, 30, 40]
    for a, b in zip(fast.Z, ref.Z):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * max(1.0, np.abs(b).max()))
    for (_, va, ga, _), (_, vb, gb, _) in zip(fast.history, ref.history):
        assert abs(va - vb) <= 1e-10 * abs(vb)
        assert ga >= 0 and gb >= 0 and abs(ga - gb) <= 1e-6 * max(gb, 1e-12)


def test_fast_path_with_the_partial_eigensolver_takes_the_reference_steps(monkeypatch):
    """The same comparison with the partial eigensolver forced on every prox after the first
    (PARTIAL_FRACTION = 1), on 256 x 64 blocks (s = 16 as in the benchmark): the iterates,
    objectives and stopping-test gaps still agree with the reference path (full SVD) to round-off."""
    fista_mod = importlib.import_module("cvxattn_lib.solvers.fista")
    used = []
    top = fista_mod.top_eigh

    def spy(C, floor, partial=False):
        used.append(partial)
        return top(C, floor, partial)

    monkeypatch.setattr(fista_mod, "PARTIAL_FRACTION", 1.0)
    monkeypatch.setattr(fista_mod, "top_eigh", spy)
    # blocks 256 x 64: a 64 x 64 Gram
    fast, ref = gated_mixer_fast_and_reference(tokens(5, n=12, s=16, d=4, c=16), 0.02, n_gates=2, max_iter=20)
    assert len(used) >= 20 and not used[0] and all(used[1:])
    for a, b in zip(fast.Z, ref.Z):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * max(1.0, np.abs(b).max()))
    assert max(np.linalg.matrix_rank(z, tol=1e-8) for z in fast.Z) >= 2  # not thresholded to 0
    for (_, va, ga, _), (_, vb, gb, _) in zip(fast.history, ref.history):
        assert abs(va - vb) <= 1e-10 * abs(vb)
        assert abs(ga - gb) <= 1e-6 * max(gb, 1e-12)


@pytest.mark.parametrize("kind, X_shape, n_gates", [("mixer", (20, 16, 3), 3),
                                                     ("self_attention", (20, 6, 3), 2)])
def test_design_product_from_factors_is_the_dense_product(kind, X_shape, n_gates):
    """B w for Z_j = F_j R_j from the factors (what FISTA uses after a low-rank prox) equals the
    product with the dense Z to round-off."""
    fista_mod = importlib.import_module("cvxattn_lib.solvers.fista")
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal(X_shape), rng.integers(0, 7, X_shape[0])
    head = cal.solvers.HEADS[kind].build(X, y, "gated_relu", None, n_gates, 0, "cross_entropy",
                                         "cpu", torch.float64)
    smooth = fista_mod._Design(head, None)
    P, p, q = head.shape
    gen = torch.Generator().manual_seed(3)
    F = torch.randn(P, p, 2, generator=gen, dtype=torch.float64)
    R = torch.randn(P, 2, q, generator=gen, dtype=torch.float64)
    got, want = smooth.out_factored(F, R), smooth.out(F @ R)
    assert got is not None and got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-12 * float(want.abs().max())


def _blocks(seed, P=4, p=64, q=128, rank=5, noise=1e-2):
    """Blocks of rank ``rank`` plus ``noise`` x a full-rank block (noise=0: exactly low rank)."""
    gen = torch.Generator().manual_seed(seed)
    U = torch.randn(P, p, rank, generator=gen, dtype=torch.float64)
    V = torch.randn(P, rank, q, generator=gen, dtype=torch.float64)
    return U @ V + noise * torch.randn(P, p, q, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("rank, noise", [(5, 0.0), (5, 1e-2), (3, 1.0), (64, 0.0)])
def test_partial_eigensolver_gives_the_full_eigenpairs(rank, noise):
    """top_eigh(partial=True) (LAPACK dsyevr on the interval above the floor) returns the same
    eigenvalues above the floor as the full eigh and the same eigenvectors (up to sign), padded
    in front with (floor, 0) for blocks with fewer, for low- and full-rank Gram blocks."""
    A = _blocks(rank + int(noise * 100), rank=rank, noise=noise)
    A[1] *= 0.3  # fewer eigenvalues above the floor in this block: padding
    C = A @ A.transpose(1, 2)
    lam_all = torch.linalg.eigvalsh(C)
    mid = float(lam_all[0, -3] + lam_all[0, -4]) / 2  # floors between eigenvalues
    for floor in (mid, float(lam_all.max()) * 1e-3, float(lam_all.max()) * 1e-9):
        fl, fu = cal.solvers.top_eigh(C, floor, partial=False)
        pl, pu = cal.solvers.top_eigh(C, floor, partial=True)
        assert pl.shape == fl.shape and pu.shape == fu.shape
        k = fl.shape[1]
        assert k == int((lam_all > floor).sum(dim=1).max())
        scale = float(lam_all.max())
        assert float((pl - fl).abs().max()) <= 1e-12 * scale
        gaps = torch.diff(lam_all, dim=1).abs()
        for j in range(C.shape[0]):
            n_j = int((lam_all[j] > floor).sum())
            assert float(pl[j, :k - n_j].sub(floor).abs().sum()) == 0.0  # the padding
            assert float(pu[j, :, :k - n_j].abs().sum()) == 0.0
            if n_j and float(gaps[j, -n_j:].min()) > 1e-6 * scale:  # simple eigenvalues: vectors
                cos = (pu[j, :, k - n_j:] * fu[j, :, k - n_j:]).sum(dim=0).abs()
                assert float((cos - 1).abs().max()) <= 1e-9
        # the projections the prox uses agree whatever the multiplicities
        proj_p = (pu * pl[:, None, :]) @ pu.transpose(1, 2)
        proj_f = (fu * fl[:, None, :]) @ fu.transpose(1, 2)
        assert float((proj_p - proj_f).abs().max()) <= 1e-11 * scale


@pytest.mark.parametrize("rank, noise", [(5, 0.0), (5, 1e-2), (3, 1.0), (64, 0.0)])
def test_svt_gram_with_the_partial_eigensolver_is_the_svt(rank, noise, monkeypatch):
    """svt_gram with a rank hint that picks the partial eigensolver equals the full SVD's prox
    and its nuclear norm to round-off, on low-rank, low-rank + noise and full-rank blocks, for
    thresholds that keep a few, most or none of the singular values; ``ranks`` gets the rank."""
    A = _blocks(10 + rank, rank=rank, noise=noise)
    sv = torch.linalg.svdvals(A)
    fista_mod = importlib.import_module("cvxattn_lib.solvers.fista")
    top, calls = fista_mod.top_eigh, []

    def spy(C, floor, partial=False):
        calls.append(partial)
        return top(C, floor, partial)

    for tau in (float(sv[:, 2].min()) * 0.999, float(sv.max()) * 1e-3, float(sv.max()) * 1.01):
        want = cal.solvers.svt(A, tau)
        ranks = []
        calls.clear()
        with monkeypatch.context() as m:  # the hint 0 picks the partial eigensolver (p = 64)
            m.setattr(fista_mod, "top_eigh", spy)
            got, nuc = cal.solvers.svt_gram(A, tau, rank_hint=0, ranks=ranks)
        assert calls in ([True], [])  # [] when every block is below tau (zero, no eigensolver)
        full, nuc_full = cal.solvers.svt_gram(A, tau)  # no hint: the full eigensolver
        scale = max(float(want.abs().max()), 1.0)
        assert float((got - want).abs().max()) <= 1e-11 * scale
        assert float((got - full).abs().max()) <= 1e-11 * scale
        want_nuc = float(torch.linalg.matrix_norm(want, ord="nuc").sum())
        assert abs(nuc - want_nuc) <= 1e-10 * max(want_nuc, 1.0)
        assert abs(nuc - nuc_full) <= 1e-10 * max(want_nuc, 1.0)
        assert ranks == [int((sv > tau).sum(dim=1).max())]
        tall, _ = cal.solvers.svt_gram(A.transpose(1, 2), tau, rank_hint=0)  # the other side
        assert float((tall.transpose(1, 2) - want).abs().max()) <= 1e-11 * scale


@pytest.mark.parametrize("shape", [(3, 5, 9), (3, 9, 5), (2, 6, 6), (4, 40, 120)])
def test_svt_gram_is_the_svt(shape):
    """The Gram route gives the SVD's prox and its nuclear norm, for wide, tall and square blocks,
    blocks thresholded to zero (Frobenius norm <= tau) and a block forced onto the SVD fallback."""
    gen = torch.Generator().manual_seed(4)
    Z = torch.randn(*shape, generator=gen, dtype=torch.float64)
    Z[0] *= 1e-3  # below every tau: zero without a decomposition
    for tau in (0.05, 1.0, 3.0, 1e3):
        want = cal.solvers.svt(Z, tau)
        got, nuc = cal.solvers.svt_gram(Z, tau)
        scale = max(float(want.abs().max()), 1.0)
        assert float((got - want).abs().max()) <= 1e-12 * scale
        assert abs(nuc - float(torch.linalg.matrix_norm(want, ord="nuc").sum())) <= 1e-10 * max(nuc, 1)
        assert float(got[0].abs().max()) == 0.0
    got, _ = cal.solvers.svt_gram(Z, 1.0, accuracy=0.0)  # every block by the SVD
    assert float((got - cal.solvers.svt(Z, 1.0)).abs().max()) <= 1e-13 * float(Z.abs().max())
    Z32 = Z.float()  # any dtype in, computed in float64, the same dtype out
    got32, _ = cal.solvers.svt_gram(Z32, 1.0)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.double().numpy(), cal.solvers.svt(Z, 1.0).numpy(), atol=1e-5)


@pytest.mark.parametrize("ratio", [1e2, 1e4, 1e5])
def test_svt_gram_accuracy_when_sigma_1_is_far_above_tau(ratio):
    """The Gram route squares the condition number; forced onto it (accuracy=1) with a few singular
    values up to ratio x tau and a cluster of 250 at tau (+-5 %), it stays within 1e-9 of the SVD's
    prox, relatively (the docstring's measurement)."""
    gen = torch.Generator().manual_seed(int(np.log10(ratio)))
    p, q, tau = 256, 768, 1.0
    U = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(q, p, generator=gen, dtype=torch.float64))[0]
    s = torch.cat([torch.logspace(np.log10(ratio), 0.3, 6, dtype=torch.float64),
                   tau * (1 + torch.linspace(-0.05, 0.05, p - 6, dtype=torch.float64))])
    A = ((U * s) @ V.T)[None]
    want = cal.solvers.svt(A, tau)
    got, _ = cal.solvers.svt_gram(A, tau, accuracy=1.0)
    assert float(torch.linalg.norm(got - want) / torch.linalg.norm(want)) <= 1e-9


def test_spectral_upper_never_underestimates():
    """The stopping test's dual norm is an upper bound on the exact one, tight to ~1e-12."""
    gen = torch.Generator().manual_seed(5)
    for shape in [(3, 4, 7), (2, 9, 3), (5, 16, 16), (1, 1, 6)]:
        for _ in range(20):
            G = torch.randn(*shape, generator=gen, dtype=torch.float64)
            G = G * torch.logspace(-3, 3, shape[0], dtype=torch.float64)[:, None, None]
            exact = float(torch.linalg.matrix_norm(G, ord=2).max())
            ub = cal.solvers.spectral_upper(G)
            assert exact <= ub <= exact * (1 + 1e-11)
    rank_one = torch.outer(torch.arange(1.0, 5.0, dtype=torch.float64),
                           torch.ones(3, dtype=torch.float64))[None]
    assert cal.solvers.spectral_upper(rank_one) >= float(torch.linalg.matrix_norm(rank_one, ord=2))


@pytest.mark.parametrize("kind,activation,loss,make,n_gates", CASES, ids=IDS)
def test_beta_max_is_the_dual_norm_of_the_gradient_at_zero(kind, activation, loss, make, n_gates):
    """beta_max = max_j ||A_j*(grad L(0))||_2, the same number as the CVXPY program's dual norm."""
    X, Y = make(6, loss=loss)
    bmax = cal.solvers.beta_max(kind, X, Y, activation=activation, n_gates=n_gates, loss=loss,
                                device="cpu")
    cvx = convex_fit(kind, X, Y, 1.0, activation, loss, n_gates)
    head = build(kind, X, Y, activation, loss, n_gates)
    G0 = zero_gradient(head).numpy()
    if loss == "cross_entropy":
        c = head.out_columns()
        np.testing.assert_allclose(G0, np.full(G0.shape, 1 / c) - np.eye(c)[head.Y_rows()])
    else:
        np.testing.assert_allclose(G0, -head.Y_rows())
    assert bmax > 0 and abs(bmax - cvx.dual_norm(G0)) <= 1e-10 * bmax


@pytest.mark.parametrize("kind,activation,loss,make,n_gates", CASES, ids=IDS)
def test_beta_fraction_one_gives_zero_and_just_below_does_not(kind, activation, loss, make, n_gates):
    X, Y = make(7, loss=loss)
    common = dict(activation=activation, n_gates=n_gates, loss=loss, device="cpu", tol=1e-9,
                  max_iter=50000, progress=False)
    for fraction in (1.0, 1.5):
        fit = cal.solvers.fit_head_fraction(kind, X, Y, fraction, **common)
        assert fit.beta_fraction == fraction and fit.beta == fraction * fit.beta_max
        assert fit.iterations == 0 and fit.converged
        assert all(np.all(z == 0) for z in fit.Z)
        assert abs(fit.rel_gap) <= 1e-12 and fit.lower_bound <= fit.value * (1 + 1e-15)
    below = cal.solvers.fit_head_fraction(kind, X, Y, 0.99, **common)
    assert below.converged and below.beta_fraction == 0.99
    assert abs(below.beta_max - fit.beta_max) <= 1e-14 * fit.beta_max
    top = max(float(np.abs(z).max()) for z in below.Z)
    assert top > 1e-6  # not zero: at 0.99 beta_max, Z = 0 is not optimal ...
    zero = cal.solvers.evaluate(below.head, below.beta,
                                Z=torch.zeros(below.head.shape, dtype=below.head.zdtype()))
    assert zero.value > below.lower_bound  # ... and its certificate proves it: L(0) > p*


def test_beta_fraction_bad_inputs_name_the_argument():
    X, Y = tokens(0)
    for bad in (0.0, -0.5, np.nan, "a"):
        with pytest.raises((ValueError, TypeError), match="beta_fraction"):
            cal.solvers.fit_head_fraction("mixer", X, Y, bad, loss="cross_entropy", device="cpu")
    with pytest.raises(ValueError, match="prox"):
        cal.solvers.fit_head("mixer", X, Y, 0.1, loss="cross_entropy", device="cpu", prox="qr")
    with pytest.raises(ValueError, match="design"):
        cal.solvers.fit_head("fno", X, Y, 0.1, activation="spectral", loss="cross_entropy",
                             device="cpu", design=True)
    with pytest.raises(ValueError, match="kind"):
        cal.solvers.beta_max("nope", X, Y)


def test_float32_design_path_keeps_a_float64_certificate():
    X, Y = tokens(8, n=20, s=4, d=3, c=4)
    kw = dict(activation="gated_relu", n_gates=2, loss="cross_entropy", device="cpu",
              progress=False, tol=1e-4, max_iter=20000)
    f32 = cal.solvers.fit_head_fraction("self_attention", X, Y, 0.3, dtype="float32", **kw)
    f64 = cal.solvers.fit_head_fraction("self_attention", X, Y, 0.3, **kw)
    # float32 iterations reach the tolerance (the sufficient-decrease test allows float32 round-off)
    assert f32.converged and f64.converged and f32.rel_gap <= 1e-4
    assert f32.info["design"] and f32.dtype == "float32" and f32.head.Xt.dtype == torch.float64
    again = cal.solvers.evaluate(f32.head, f32.beta, Z=torch.as_tensor(np.stack(f32.Z)))
    assert again.value == pytest.approx(f32.value, rel=1e-12)
    assert again.certificate.lower_bound == pytest.approx(f32.lower_bound, rel=1e-12)
    assert f32.lower_bound <= f64.value * (1 + 1e-12) and f64.lower_bound <= f32.value * (1 + 1e-12)


def _token0(base):
    class Token0(base):
        """Logits = token 0's outputs (a read-out other than the mean)."""

        def _out(self, out):
            return out[:, 0] if self.loss == "cross_entropy" else super()._out(out)
    return Token0


@pytest.mark.parametrize("base", [cal.solvers.MixerTorchHead, cal.solvers.AttentionHead])
def test_design_follows_a_subclass_read_out(base):
    """A head that reads token 0 instead of the mean gets the design of that read-out (read off its
    own _out): same steps and optimum as the reference path."""
    kind = "test_token0_" + base.__name__
    cal.solvers.register_head(kind)(_token0(base))
    try:
        X, Y = tokens(9, n=14, s=4, d=2, c=3)
        head = build(kind, X, Y, "gated_relu", "cross_entropy", 2)
        np.testing.assert_array_equal(head.readout_weights().numpy(), [1.0, 0, 0, 0])
        Z = torch.randn(*head.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        np.testing.assert_allclose((head.stacked_design() @ Z.reshape(-1, head.out_columns())).numpy(),
                                   head.predict(Z).numpy(), rtol=1e-12, atol=1e-12)
        common = dict(activation="gated_relu", n_gates=2, loss="cross_entropy", device="cpu",
                      tol=1e-9, max_iter=50000, progress=False)
        fast = cal.solvers.fit_head_fraction(kind, X, Y, 0.2, **common)
        ref = cal.solvers.fit_head_fraction(kind, X, Y, 0.2, **common, **REFERENCE)
        assert fast.info["design"] and fast.converged and ref.converged
        assert abs(fast.value - ref.value) <= MATCH * ref.value
    finally:
        cal.solvers.HEADS.pop(kind)


def test_a_design_that_is_not_the_forward_map_is_refused():
    """design='auto' falls back to autograd (and still certifies); design=True names the problem."""
    class Wrong(cal.solvers.MixerTorchHead):
        def pooled_design(self, idx=None):
            return 2.0 * super().pooled_design(idx)

    cal.solvers.register_head("test_wrong_design")(Wrong)
    try:
        X, Y = tokens(10)
        kw = dict(activation="gated_relu", n_gates=2, loss="cross_entropy", device="cpu",
                  progress=False, tol=1e-8, max_iter=50000)
        fit = cal.solvers.fit_head("test_wrong_design", X, Y, 0.1, **kw)
        assert not fit.info["design"] and fit.converged and fit.rel_gap <= 1e-8
        with pytest.raises(ValueError, match="does not reproduce its forward map"):
            cal.solvers.fit_head("test_wrong_design", X, Y, 0.1, design=True, **kw)
    finally:
        cal.solvers.HEADS.pop("test_wrong_design")


# -- the inexact subspace prox and the low-rank FISTA loop (gated Mixer's fast path) -----------

def _spectrum_blocks(seed, P=3, p=48, q=96, top=(9.0, 7.0, 5.0, 4.0, 3.0), tail=0.5):
    """Blocks U diag(s) V^T with singular values ``top`` then ``tail`` x a decreasing ramp
    (full rank), random orthonormal U, V; returns the blocks and their right singular vectors."""
    gen = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(P, p, p, generator=gen, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(P, q, p, generator=gen, dtype=torch.float64))[0]
    s = torch.cat([torch.tensor(top, dtype=torch.float64),
                   tail * torch.linspace(1.0, 0.0, p - len(top), dtype=torch.float64)])
    return (U * s) @ V.transpose(1, 2), V


def _condition(o, A, tau):
    """||E||_2^2 + s_hat^2 <= tau^2 with E = (I - Q Q^T) A: when X is exactly a prox."""
    Q = o["Q"]
    E = A - Q @ (Q.transpose(1, 2) @ A)
    e2 = float(torch.linalg.matrix_norm(E, ord=2).max())
    return e2 ** 2 + max(o["s_hat"], 0.0) ** 2 <= tau ** 2


@pytest.mark.parametrize("tail", [0.0, 0.5, 2.5])
@pytest.mark.parametrize("angle", [0.0, 1e-6, 1e-3, 0.1])
def test_svt_subspace_is_within_its_stated_bound(tail, angle):
    """svt_subspace from a start ``angle`` away from the top-8 right singular vectors, on blocks
    of rank 5 (tail 0), rank 5 + a full-rank tail below tau (0.5) and full rank with the tail up
    to 2.5 > tau = 2: whenever its condition holds (checked here exactly), the distance to the
    exact SVT is at most the Ritz residual, which is at most ``bound``; a start on the exact
    vectors of a low-rank block gives the SVT to round-off; with the tail above tau the subspace
    holds no spare Ritz value below tau (the safeguard FISTA tests)."""
    A, V = _spectrum_blocks(int(1e3 * angle) + int(10 * tail), tail=tail)
    tau = 2.0
    gen = torch.Generator().manual_seed(7)
    V0 = V[:, :, :8] + angle * torch.randn(V[:, :, :8].shape, generator=gen, dtype=torch.float64)
    o = cal.solvers.svt_subspace(A, tau, V0, residual=True)
    want = cal.solvers.svt(A, tau)
    err = float(torch.linalg.vector_norm(o["X"] - want))
    scale = float(torch.linalg.vector_norm(A))
    assert o["X"].shape == A.shape and o["F"].shape[2] == o["rank"] == o["R"].shape[1]
    assert float((o["F"] @ o["R"] - o["X"]).abs().max()) <= 1e-13 * scale
    if tail > tau:
        assert o["spare"] < 2  # Ritz values above tau fill the subspace: FISTA takes the exact prox
        return
    assert o["rank"] == 5 and _condition(o, A, tau)
    assert err <= o["residual"] + 1e-12 * scale
    assert o["residual"] <= o["bound"] * (1 + 1e-8) + 1e-12 * scale
    want_nuc = float(torch.linalg.matrix_norm(want, ord="nuc").sum())
    # |sum_j ||X_j||_* - ||S_j||_*| <= sum_j ||X_j - S_j||_* <= sqrt(10 P) ||X - S||_F (rank <= 10)
    assert abs(o["nuc"] - want_nuc) <= np.sqrt(10 * A.shape[0]) * o["bound"] + 1e-10 * want_nuc
    if angle <= 1e-6:  # a start this close: the prox to round-off (bound ~ angle x tau)
        assert err <= 1e-12 * scale + 10 * angle * scale
    if angle == 0.0 and tail == 0.0:
        assert err <= 1e-13 * scale and o["bound"] <= 1e-12 * scale
    assert 0.0 < err or angle == 0.0  # not vacuous: the start is off, the prox is inexact


def test_svt_subspace_more_power_steps_shrink_the_error_and_float32_stays_float32():
    """More power steps from a poor start bring the result closer to the SVT (the bound shrinks
    with it); float32 blocks give float32 results within float32 round-off of the bound."""
    A, V = _spectrum_blocks(11, tail=0.5)
    gen = torch.Generator().manual_seed(8)
    V0 = V[:, :, :8] + 0.3 * torch.randn(V[:, :, :8].shape, generator=gen, dtype=torch.float64)
    want = cal.solvers.svt(A, 2.0)
    errs, bounds = [], []
    for power in (1, 2, 4):
        o = cal.solvers.svt_subspace(A, 2.0, V0, power=power)
        errs.append(float(torch.linalg.vector_norm(o["X"] - want)))
        bounds.append(o["bound"])
        assert errs[-1] <= bounds[-1] + 1e-12
    assert errs[2] < errs[0] and bounds[2] < bounds[0]
    o32 = cal.solvers.svt_subspace(A.float(), 2.0, V0.float(), power=4)
    assert o32["X"].dtype == torch.float32
    assert float(torch.linalg.vector_norm(o32["X"].double() - want)) <= bounds[2] + 1e-4


def test_svt_subspace_bad_inputs_name_the_argument():
    A = torch.zeros(2, 6, 10, dtype=torch.float64)
    V0 = torch.zeros(2, 10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="A must"):
        cal.solvers.svt_subspace(A.transpose(1, 2), 1.0, V0)
    with pytest.raises(ValueError, match="V0"):
        cal.solvers.svt_subspace(A, 1.0, V0[:, :5])
    with pytest.raises(ValueError, match="power"):
        cal.solvers.svt_subspace(A, 1.0, V0, power=0)
    with pytest.raises(ValueError, match="tau"):
        cal.solvers.svt_subspace(A, -1.0, V0)
    X, Y = tokens(0, n=8, s=4, d=2, c=3)
    for bad in ({"subspace_rho": -1.0}, {"exact_every": 0}, {"prox": "subspace"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            cal.solvers.fit_head("mixer", X, Y, 0.1, loss="cross_entropy", device="cpu", **bad)


def _lowrank_problem():
    """A gated Mixer problem whose blocks (64 x 72) take the low-rank loop once SUBSPACE_MIN is
    lowered to 64 (the benchmark's 256 x 768 blocks are too slow for a test)."""
    return tokens(9, n=40, s=8, d=3, c=24), 0.02


def _fit_mixer(data, beta, **options):
    X, Y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # max_iter reached on purpose (some)
        return cal.solvers.fit_head("mixer", X, Y, beta, activation="gated_relu", n_gates=3,
                                    loss="cross_entropy", device="cpu", progress=False, **options)


def test_lowrank_loop_with_exact_proxes_takes_the_dense_loops_steps(monkeypatch):
    """prox='auto' with exact_every=1 runs the low-rank loop (factored iterates, the step as an
    operator, inner products from factors and outputs) with the exact prox every time: its
    iterates and stopping-test values equal the dense loop's (prox='gram') to round-off."""
    fista_mod = importlib.import_module("cvxattn_lib.solvers.fista")
    monkeypatch.setattr(fista_mod, "SUBSPACE_MIN", 64)
    data, beta = _lowrank_problem()
    common = dict(tol=1e-14, max_iter=60, check_every=10)
    low = _fit_mixer(data, beta, exact_every=1, **common)
    dense = _fit_mixer(data, beta, prox="gram", **common)
    assert low.info["lowrank"] and not dense.info["lowrank"]
    assert low.info["proxes"]["subspace"] == 0 and low.info["proxes"]["exact"] >= 60
    for a, b in zip(low.Z, dense.Z):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * max(1.0, np.abs(b).max()))
    for (ia, va, ga, _), (ib, vb, gb, _) in zip(low.history, dense.history):
        assert ia == ib and abs(va - vb) <= 1e-10 * abs(vb) and abs(ga - gb) <= 1e-6 * gb


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_inexact_prox_reaches_the_same_certified_optimum(dtype, monkeypatch):
    """The low-rank loop with the inexact subspace prox (most proxes) reaches a certified relative
    gap of 1e-6 (float64; 1e-4 with float32 iterations) like the exact path, and the two
    certified values agree within the sum of their gaps (each is within its gap of the optimum)."""
    fista_mod = importlib.import_module("cvxattn_lib.solvers.fista")
    monkeypatch.setattr(fista_mod, "SUBSPACE_MIN", 64)
    data, beta = _lowrank_problem()
    tol = 1e-6 if dtype == "float64" else 1e-4
    fast = _fit_mixer(data, beta, tol=tol, max_iter=20000, dtype=dtype)
    exact = _fit_mixer(data, beta, tol=1e-9, max_iter=20000, prox="gram")
    assert fast.converged and exact.converged
    assert fast.info["lowrank"] and fast.info["prox"] == "gram+subspace"
    assert fast.info["proxes"]["subspace"] > fast.info["proxes"]["exact"]
    assert fast.certificate.rel_gap <= tol
    assert abs(fast.value - exact.value) <= (tol + 1e-9) * abs(exact.value)
    assert fast.lower_bound <= exact.value * (1 + 1e-12)
    assert exact.lower_bound <= fast.value * (1 + 1e-12)


def test_inexact_prox_linear_mixer_and_warm_start(monkeypatch):
    """The linear Mixer (one block) takes the low-rank loop too, and a warm start (a path's next
    beta, started from the previous solution) reaches the exact path's certified optimum."""
    fista_mod = importlib.import_module("cvxattn_lib.solvers.fista")
    monkeypatch.setattr(fista_mod, "SUBSPACE_MIN", 64)
    (X, Y), beta = _lowrank_problem()
    common = dict(loss="cross_entropy", device="cpu", progress=False, max_iter=20000)
    fast = cal.solvers.fit_head("mixer", X, Y, beta, activation="linear", tol=1e-6, **common)
    exact = cal.solvers.fit_head("mixer", X, Y, beta, activation="linear", tol=1e-9, prox="gram",
                                 **common)
    assert fast.info["lowrank"] and fast.info["proxes"]["subspace"] > 0
    assert fast.converged and abs(fast.value - exact.value) <= (1e-6 + 1e-9) * exact.value
    Z0 = torch.as_tensor(np.stack(_fit_mixer((X, Y), beta, tol=1e-4, max_iter=20000).Z))
    warm = _fit_mixer((X, Y), 0.9 * beta, tol=1e-6, max_iter=20000, Z0=Z0)
    cold = _fit_mixer((X, Y), 0.9 * beta, tol=1e-9, max_iter=20000, prox="gram")
    assert warm.info["lowrank"] and warm.info["proxes"]["subspace"] > 0 and warm.converged
    assert abs(warm.value - cold.value) <= (1e-6 + 1e-9) * cold.value
