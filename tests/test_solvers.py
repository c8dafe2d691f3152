"""Torch solvers of the convex heads (cal.solvers) against the CVXPY programs (cal.convex), float64:
same forward for the same Z, same optimum (1e-6 relative), certified lower bounds never above the
CVXPY optimum, Burer–Monteiro reaching it with enough columns, and clear errors."""

import warnings

import numpy as np
import pytest
import torch

import cvxattn_lib as cal
from convex_heads import build, convex_fit
from cvxattn_lib.nonconvex import attention_objective, mlp_objective
from cvxattn_lib.nonconvex.mixer import fno_objective, mixer_objective

MATCH = 1e-6  # torch optimum vs CVXPY optimum, relative
BELOW = 1e-9  # a certified lower bound may exceed the CVXPY value only by round-off
RECOVER = 1e-8  # recovered weights reach the returned value


def attention_problem(seed, n=12, s=4, d=2, c=2, loss="squared"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, s, d))
    Y = rng.standard_normal((n, s, c)) if loss == "squared" else rng.integers(0, 3, n)
    return X, Y


def mlp_problem(seed, n=30, d=3, c=2, loss="squared"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, c)) if loss == "squared" else rng.integers(0, 3, n)
    return X, Y


def objective(kind, weights, X, Y, beta, activation, loss):
    f = {"self_attention": attention_objective, "mixer": mixer_objective,
         "fno": fno_objective, "mlp": mlp_objective}[kind]
    return f(weights, X, Y, beta, activation, loss)


CASES = [  # kind, activation, loss, problem, n_gates
    ("self_attention", "linear", "squared", attention_problem, None),
    ("self_attention", "gated_relu", "squared", attention_problem, 2),
    ("self_attention", "linear", "cross_entropy", attention_problem, None),
    ("mlp", "gated_relu", "squared", mlp_problem, 4),
    ("mlp", "gated_relu", "cross_entropy", mlp_problem, 4),
    ("mlp", "linear", "squared", mlp_problem, None),
    ("mixer", "linear", "squared", attention_problem, None),
    ("mixer", "gated_relu", "squared", attention_problem, 2),
    ("fno", "circulant", "squared", attention_problem, None),
    ("fno", "spectral", "squared", attention_problem, None),
    ("fno", "spectral", "cross_entropy", attention_problem, None),
]
IDS = [f"{k}-{a}-{lo}" for k, a, lo, _, _ in CASES]


@pytest.mark.parametrize("kind,activation,loss,make,n_gates", CASES, ids=IDS)
def test_forward_adjoint_and_dual_norm_match_the_convex_program(kind, activation, loss, make, n_gates):
    """forward(Z) = the cal.convex prediction for the same Z; factored forward = forward(U V^T);
    the Gram design reproduces it; <V, A(Z)> = <A*(V), Z>; dual norm = the convex fit's, by SVD and
    by matrix-free power iteration."""
    X, Y = make(0, loss=loss)
    fit = convex_fit(kind, X, Y, 0.3, activation, loss, n_gates)
    head = build(kind, X, Y, activation, loss, n_gates)
    Z = torch.as_tensor(np.stack(fit.Z)).to(head.zdtype())
    assert tuple(Z.shape) == head.shape
    np.testing.assert_allclose(head.predict(Z).numpy(), fit.prediction(), rtol=1e-12, atol=1e-11)
    gen = torch.Generator().manual_seed(1)
    U = torch.randn(*head.shape[:2], 3, generator=gen, dtype=head.zdtype())
    V = torch.randn(head.shape[0], head.shape[2], 3, generator=gen, dtype=head.zdtype())
    np.testing.assert_allclose(head.predict(None, factors=(U, V)).numpy(),
                               head.predict(U @ V.transpose(1, 2)).numpy(), rtol=1e-11, atol=1e-11)
    if loss == "squared" and not head.complex:  # un-pooled outputs = sum_j B_j Z_j.reshape(m, c)
        B = head.design()
        c = fit.prediction().shape[1]
        via_design = sum(B[j] @ Z[j].reshape(-1, c) for j in range(B.shape[0]))
        np.testing.assert_allclose(via_design.numpy(), fit.prediction(), rtol=1e-12, atol=1e-11)
    G = torch.randn(*fit.prediction().shape, generator=gen, dtype=torch.float64)
    lhs = float((G * head.predict(Z)).sum())
    rhs = float((head.adjoint(G).conj() * Z).real.sum())  # real inner product (complex: Re)
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))
    if hasattr(fit, "adjoint"):  # the token-mixing fits expose A*(V) (token-level V) directly
        ref = fit.adjoint(G.numpy()) if loss == "squared" else None
        if ref is not None:
            for a, b in zip(head.adjoint(G).numpy(), ref):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    exact = fit.dual_norm(G.numpy())
    svd = cal.solvers.spectral_norms(head, G)
    assert svd.method == "svd" and abs(svd.value - exact) <= 1e-10 * exact
    if not head.complex:  # complex heads are small: always the exact SVD
        power = cal.solvers.spectral_norms(head, G, explicit_limit=0, power_iter=5000,
                                           power_tol=1e-13)
        assert power.method == "power"
        assert power.value <= exact * (1 + 1e-12)  # power iteration approaches from below
        assert abs(power.value - exact) <= 1e-6 * exact


@pytest.mark.parametrize("kind,activation,loss,make,n_gates", CASES, ids=IDS)
def test_fista_reaches_the_cvxpy_optimum(kind, activation, loss, make, n_gates):
    X, Y = make(1, loss=loss)
    beta = 0.3
    fit = convex_fit(kind, X, Y, beta, activation, loss, n_gates)
    res = cal.solvers.fit_head(kind, X, Y, beta, activation=activation, n_gates=n_gates, loss=loss,
                               device="cpu", tol=1e-7, progress=False)
    assert res.converged and res.method == "fista" and res.device == "cpu"
    assert abs(res.value - fit.value) <= MATCH * fit.value, (res.value, fit.value)
    assert res.lower_bound <= fit.value * (1 + BELOW), (res.lower_bound, fit.value)
    assert 0 <= res.rel_gap <= 1e-7 and res.dual_norm <= beta * (1 + np.sqrt(1e-7))
    assert abs(res.lower_bound - fit.value) <= 2e-7 * fit.value
    # weights in cal.convex's names and shapes, reaching the value in the non-convex model
    w, wc = res.weights(), fit.weights()
    assert set(w) == set(wc)
    if kind == "mlp":
        assert all(w[k].shape[0] == wc[k].shape[0] for k in w)
    elif (kind, activation) == ("fno", "spectral"):  # (K, d, m), (K, m, c)
        assert w["W1"].shape[:2] == wc["W1"].shape[:2] and w["W2"].shape[::2] == wc["W2"].shape[::2]
    else:
        assert all(w[k].shape[1:] == wc[k].shape[1:] for k in w)
    assert abs(objective(kind, w, X, Y, beta, activation, loss) - res.value) <= RECOVER * res.value
    assert len(res.Z) == len(fit.Z)
    assert all(z.dtype == zc.dtype and z.dtype in (np.float64, np.complex128)
               for z, zc in zip(res.Z, fit.Z))
    # the gates are those cal.convex drew for the same seed
    if kind != "fno":
        gates = fit.G if kind == "mlp" else fit.gates
        np.testing.assert_array_equal(res.gates, gates)


def test_fista_gram_and_autograd_paths_agree():
    X, Y = attention_problem(2)
    a = cal.solvers.fit_head("self_attention", X, Y, 0.2, gram=True, tol=1e-8, progress=False)
    b = cal.solvers.fit_head("self_attention", X, Y, 0.2, gram=False, tol=1e-8, progress=False)
    assert a.info["gram"] and not b.info["gram"]
    assert abs(a.value - b.value) <= 2e-8 * a.value


@pytest.mark.parametrize("kind,activation,make,n_gates", [
    ("self_attention", "linear", attention_problem, None),
    ("self_attention", "gated_relu", attention_problem, 2),
    ("mlp", "gated_relu", mlp_problem, 4),
    ("mixer", "gated_relu", attention_problem, 2),
    ("fno", "spectral", attention_problem, None),
], ids=["attention-linear", "attention-gated", "mlp-gated", "mixer-gated", "fno-spectral"])
def test_burer_monteiro_with_enough_columns_reaches_the_optimum(kind, activation, make, n_gates):
    X, Y = make(3)
    beta = 0.3
    fit = convex_fit(kind, X, Y, beta, activation, "squared", n_gates)
    rank = max(int(np.sum(sv > 1e-6 * max(sv.max(), 1.0)))
               for sv in (np.linalg.svd(z, compute_uv=False) for z in fit.Z)) + 1
    res = cal.solvers.fit_head(kind, X, Y, beta, method="burer_monteiro", activation=activation,
                               n_gates=n_gates, rank=rank, epochs=100, batch_size=4,
                               polish_iter=3000, tol=1e-6, progress=False)
    assert res.method == "burer_monteiro"
    assert abs(res.value - fit.value) <= MATCH * fit.value, (res.value, fit.value)
    assert res.lower_bound <= fit.value * (1 + BELOW)
    assert res.stationary_bound <= 1e-4
    w = res.weights()
    assert abs(objective(kind, w, X, Y, beta, activation, "squared") - res.value) <= RECOVER * res.value


def test_too_few_columns_stay_above_the_optimum_within_the_stationary_bound():
    """Negative control: one head cannot reach a rank >= 2 optimum; the bounds still hold."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((15, 3, 2))
    teacher = cal.nonconvex.MultiHeadAttention.from_weights(
        {"W1": rng.standard_normal((4, 2, 2)), "W2": rng.standard_normal((4, 2, 2))}, "linear")
    Y = teacher.predict(X) + 0.3 * rng.standard_normal((15, 3, 2))
    beta = 0.1
    fit = cal.convex.fit_self_attention(X, Y, beta)
    assert fit.n_heads >= 2
    with pytest.warns(RuntimeWarning, match="rank"):
        res = cal.solvers.fit_head("self_attention", X, Y, beta, method="burer_monteiro", rank=1,
                                   epochs=50, batch_size=5, polish_iter=2000, progress=False)
    assert res.value > fit.value * (1 + 1e-4)
    assert res.lower_bound <= fit.value * (1 + BELOW)
    assert res.stationary_bound > 0
    assert (res.info["factored_value"] - fit.value) / fit.value <= res.stationary_bound * (1 + 1e-3)


def test_float32_training_gives_a_float64_certificate():
    X, Y = attention_problem(4)
    fit = cal.convex.fit_self_attention(X, Y, 0.3)
    with warnings.catch_warnings():  # float32 stops short of the 1e-6 certified gap: expected
        warnings.simplefilter("ignore", RuntimeWarning)
        res = cal.solvers.fit_head("self_attention", X, Y, 0.3, method="burer_monteiro",
                                   dtype="float32", rank=5, epochs=100, batch_size=4,
                                   polish_iter=500, progress=False)
    assert res.dtype == "float32" and res.head.Xt.dtype == torch.float64
    assert res.lower_bound <= fit.value * (1 + BELOW)
    assert abs(res.value - fit.value) <= 1e-4 * fit.value  # float32 accuracy
    # the reported value is the float64 objective of the returned point
    w = res.weights()
    assert abs(attention_objective(w, X, Y, 0.3, "linear") - res.value) <= RECOVER * res.value


def test_max_iter_reached_warns_with_what_to_try():
    X, Y = attention_problem(5)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        res = cal.solvers.fit_head("self_attention", X, Y, 0.3, max_iter=3, progress=False)
    assert not res.converged and res.iterations == 3 and "max_iter" in res.message


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(kind="transformer"), ValueError, "kind"),
    (dict(method="adam"), ValueError, "method"),
    (dict(device="tpu"), ValueError, "device"),
    (dict(device="cuda:0"), ValueError, "cuda"),
    (dict(beta=-1.0), ValueError, "beta"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(activation="softmax"), ValueError, "activation"),
    (dict(X=np.zeros((4, 3))), ValueError, "X"),
    (dict(Y=np.zeros((5, 3, 1))), ValueError, "Y"),
    (dict(X=np.full((4, 3, 2), np.nan)), ValueError, "X"),
    (dict(rank=2), TypeError, "rank"),  # a Burer-Monteiro option given to FISTA
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(dtype="bfloat16"), ValueError, "burer_monteiro"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(gates=np.zeros((2, 3, 3)), activation="gated_relu"), ValueError, "gates"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_inputs_name_the_argument(kwargs, err, match):
    if kwargs.get("device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    X, Y = attention_problem(0, n=4, s=3, d=2, c=1)
    args = dict(kind="self_attention", X=X, Y=Y, beta=0.1, progress=False) | kwargs
    with pytest.raises(err, match=match):
        cal.solvers.fit_head(**args)


def test_relu_mlp_points_to_gated_relu():
    X, Y = mlp_problem(0, n=6, c=1)
    with pytest.raises(ValueError, match="gated_relu"):
        cal.solvers.fit_head("mlp", X, Y, 0.1, activation="relu", progress=False)


def test_registry_plugs_in_a_new_head():
    """A head registered under a new kind is reachable through fit_head (then removed)."""

    @cal.solvers.register_head("scaled_mlp_test")
    class Scaled(cal.solvers.MLPHead):
        def forward(self, Z, idx=None):
            return 2.0 * super().forward(Z, idx)

        def forward_factored(self, U, V, idx=None):
            return 2.0 * super().forward_factored(U, V, idx)

        def design(self, idx=None):
            return 2.0 * super().design(idx)

    try:
        X, Y = mlp_problem(6)
        a = cal.solvers.fit_head("scaled_mlp_test", X, Y, 0.4, activation="linear", tol=1e-8,
                                 progress=False)
        b = cal.solvers.fit_head("mlp", 2 * X, Y, 0.4, activation="linear", tol=1e-8, progress=False)
        assert abs(a.value - b.value) <= 1e-7 * b.value
    finally:
        cal.solvers.HEADS.pop("scaled_mlp_test")


def test_matrix_free_certificate_agrees_with_the_svd_one():
    """The certificate with power iteration (never forming A*(G)) matches the exact one."""
    X, Y = attention_problem(7)
    fit = cal.convex.fit_self_attention(X, Y, 0.3, activation="gated_relu", n_gates=2)
    kw = dict(activation="gated_relu", n_gates=2, tol=1e-7, progress=False)
    exact = cal.solvers.fit_head("self_attention", X, Y, 0.3, **kw)
    free = cal.solvers.fit_head("self_attention", X, Y, 0.3, explicit_limit=0, power_tol=1e-12,
                                power_iter=5000, **kw)
    assert exact.info["dual_method"] == "svd" and free.info["dual_method"] == "power"
    assert abs(free.dual_norm - exact.dual_norm) <= 1e-6 * exact.dual_norm
    assert free.lower_bound <= fit.value * (1 + BELOW)
    assert abs(free.value - fit.value) <= MATCH * fit.value


def test_float32_fista_keeps_a_float64_certificate():
    X, Y = attention_problem(8)
    fit = cal.convex.fit_self_attention(X, Y, 0.3)
    with warnings.catch_warnings():  # float32 may stop short of tol: the certificate says how far
        warnings.simplefilter("ignore", RuntimeWarning)
        res = cal.solvers.fit_head("self_attention", X, Y, 0.3, dtype="float32", max_iter=3000,
                                   tol=1e-5, progress=False)
    assert res.dtype == "float32" and res.head.Xt.dtype == torch.float64
    assert res.lower_bound <= fit.value * (1 + BELOW)
    assert abs(res.value - fit.value) <= 1e-4 * fit.value


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("activation", ["linear", "gated_relu"])
def test_cuda_reaches_the_cpu_optimum(activation):
    X, Y = attention_problem(9)
    kw = dict(activation=activation, n_gates=2, tol=1e-8, progress=False)
    cpu = cal.solvers.fit_head("self_attention", X, Y, 0.3, device="cpu", **kw)
    gpu = cal.solvers.fit_head("self_attention", X, Y, 0.3, device="cuda", **kw)
    assert gpu.device.startswith("cuda")
    assert abs(gpu.value - cpu.value) <= 1e-7 * cpu.value
    bm = cal.solvers.fit_head("self_attention", X, Y, 0.3, method="burer_monteiro", device="cuda",
                              dtype="float32", activation=activation, n_gates=2, rank=6,
                              epochs=100, batch_size=4, polish_iter=500, progress=False)
    assert bm.lower_bound <= cpu.value * (1 + 1e-8)  # float64 certificate of a float32 run


# -- notebook 06's pieces: SVT, plain FISTA, the stationary bound, timing to a certified gap ----------
def test_svt_is_the_prox_of_the_nuclear_norm():
    """Z = SVT(Y, tau) solves min 1/2 ||Z - Y||^2 + tau ||Z||_*: (Y - Z)/tau is a subgradient of
    ||.||_* at Z (spectral norm <= 1 and <(Y - Z)/tau, Z> = ||Z||_*), and CVXPY agrees."""
    import cvxpy as cp

    rng = np.random.default_rng(11)
    Y, tau = rng.standard_normal((5, 4)), 0.9
    Z = cal.solvers.svt(Y, tau)
    sv = np.linalg.svd(Y, compute_uv=False)
    assert isinstance(Z, np.ndarray) and Z.shape == Y.shape
    assert 0 < np.linalg.matrix_rank(Z, tol=1e-10) < 4  # the threshold cut some, not all
    G = (Y - Z) / tau
    assert np.linalg.norm(G, 2) <= 1 + 1e-12
    assert abs(np.sum(G * Z) - np.linalg.norm(Z, "nuc")) <= 1e-12 * np.linalg.norm(Z, "nuc")
    assert np.allclose(np.linalg.svd(Z, compute_uv=False), np.maximum(sv - tau, 0), atol=1e-12)
    V = cp.Variable(Y.shape)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(V - Y) + tau * cp.normNuc(V))).solve(solver="CLARABEL")
    assert np.abs(V.value - Z).max() <= 1e-6
    stack = rng.standard_normal((3, 4, 6))  # numpy stack = torch batch
    torch_out = cal.solvers.svt(torch.as_tensor(stack), 0.5).numpy()
    assert np.allclose(cal.solvers.svt(stack, 0.5), torch_out, atol=1e-13)


@pytest.mark.parametrize("Z,tau,match", [(np.zeros(3), 0.1, "Z"), (np.zeros((2, 2)), -1.0, "tau")])
def test_svt_bad_inputs_name_the_argument(Z, tau, match):
    with pytest.raises(ValueError, match=match):
        cal.solvers.svt(Z, tau)


def test_plain_fista_steps_meet_the_beck_teboulle_bound():
    """Constant step 1/L, L = ||B||_2^2: F(Z_k) - p* <= 2 L ||Z_0 - Z*||^2 / (k + 1)^2 at every k,
    and the iterates reach the CVXPY optimum."""
    X, Y = attention_problem(12, n=10, s=3, d=2, c=2)
    beta = 0.3
    fit = cal.convex.fit_self_attention(X, Y, beta)
    B, Yf = cal.convex.attention.design(X, None), Y.reshape(-1, 2)
    d, c = 2, 2

    def grad(Z):
        return (B.T @ (B @ Z.reshape(d**3, c) - Yf)).reshape(d * d, d * c)

    def F(Z):
        return 0.5 * np.sum((B @ Z.reshape(d**3, c) - Yf) ** 2) + beta * np.linalg.norm(Z, "nuc")

    L = np.linalg.norm(B, 2) ** 2
    Z0 = np.zeros((d * d, d * c))
    R2 = np.sum((Z0 - fit.Z[0]) ** 2)
    Z, Yk, t = Z0, Z0, 1.0
    for k in range(1, 2001):
        Z, Yk, t = cal.solvers.fista_step(Yk, Z, t, grad, L, beta)
        assert F(Z) - fit.value <= 2 * L * R2 / (k + 1) ** 2 + 1e-9 * fit.value
        assert t >= (k + 2) / 2  # t_{k+1} >= (k + 2) / 2, the rate's key inequality
    assert abs(F(Z) - fit.value) <= 1e-7 * fit.value
    with pytest.raises(ValueError, match="t must"):
        cal.solvers.fista_step(Yk, Z, 0.5, grad, L, beta)
    with pytest.raises(ValueError, match="L"):
        cal.solvers.fista_step(Yk, Z, 1.0, grad, 0.0, beta)


def test_stationary_bound_values_and_errors():
    assert cal.solvers.stationary_bound(3.0, 2.0) == 0.5
    assert cal.solvers.stationary_bound(1.0, 2.0) == 0.0
    with pytest.raises(ValueError, match="dual_norm"):
        cal.solvers.stationary_bound(-1.0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        cal.solvers.stationary_bound(1.0, 0.0)


def test_time_to_certified_gap_cvxpy_and_fista_reach_the_same_optimum():
    X, Y = attention_problem(13, n=8, s=3, d=2, c=1)
    cvx = cal.solvers.time_to_certified_gap(X, Y, 0.2, solver="cvxpy", tol=1e-6, repeats=2)
    fst = cal.solvers.time_to_certified_gap(X, Y, 0.2, solver="fista", tol=1e-6)
    assert len(cvx.times) == 2 and cvx.seconds > 0 and cvx.iterations is None
    assert cvx.backend in cal.installed_solvers() and fst.backend == "fista"
    assert cvx.reached and fst.reached and fst.iterations >= 1
    assert abs(cvx.value - fst.value) <= 1e-6 * cvx.value
    assert fst.lower_bound <= cvx.value * (1 + BELOW) and cvx.lower_bound <= fst.value * (1 + BELOW)
    short = cal.solvers.time_to_certified_gap(X, Y, 0.2, solver="fista", tol=1e-12, max_iter=2)
    assert not short.reached and "max_iter" in short.message  # the warning is kept, not raised
    with pytest.raises(ValueError, match="solver"):
        cal.solvers.time_to_certified_gap(X, Y, 0.2, solver="adam")
    with pytest.raises(ValueError, match="repeats"):
        cal.solvers.time_to_certified_gap(X, Y, 0.2, repeats=0)


def test_seconds_per_iteration_reads_the_fista_history():
    X, Y = attention_problem(14)
    res = cal.solvers.fit_head("self_attention", X, Y, 0.3, tol=1e-8, check_every=1, progress=False)
    assert len(res.history) >= 2 and cal.solvers.seconds_per_iteration(res) > 0
    bm = cal.solvers.fit_head("self_attention", X, Y, 0.3, method="burer_monteiro", rank=4, epochs=0,
                              polish_iter=100, progress=False)
    with pytest.raises(ValueError, match="FISTA"):
        cal.solvers.seconds_per_iteration(bm)


def test_cross_entropy_certificate_is_the_entropy_of_the_shifted_simplex_point():
    """The library's cross-entropy certificate (notebook 06, step 3b) equals
    sum_i H(t p_i + (1 - t) e_{y_i}) with t = min(1, beta / ||A*(P - E)||_2), computed here from the
    mean-pooled design, and brackets CVXPY's optimum at every iterate."""
    from scipy.special import logsumexp, softmax, xlogy

    from cvxattn_lib.convex.attention import design

    n, s, d, c, beta = 10, 3, 2, 3, 0.3
    X, Y, _ = cal.toydata.attention_teacher(n=n, s=s, d=d, c=c, heads=1, noise=0.1, seed=3)
    labels = Y.mean(axis=1).argmax(axis=1)
    B = np.kron(np.eye(n), np.full((1, s), 1 / s)) @ design(X, None)
    E = np.eye(c)[labels]
    ref = cal.convex.fit_self_attention(X, labels, beta, loss="cross_entropy")
    ref_cert = ref.certificate()
    head = cal.solvers.HEADS["self_attention"].build(X, labels, "linear", None, None, 0, "cross_entropy",
                                                     "cpu", torch.float64)
    for iters in (1, 5, 50):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = cal.solvers.fit_head("self_attention", X, labels, beta, loss="cross_entropy", tol=1e-12,
                                       max_iter=iters, device="cpu", progress=False)
        Z = np.asarray(fit.Z[0])
        U = B @ Z.reshape(d**3, c)
        P = softmax(U, axis=1)
        t = min(1.0, beta / np.linalg.norm((B.T @ (P - E)).reshape(d * d, d * c), 2))
        Q = t * P + (1 - t) * E
        bound = -np.sum(xlogy(Q, Q))
        value = np.sum(logsumexp(U, axis=1) - U[np.arange(n), labels]) + beta * np.linalg.norm(Z, "nuc")
        ev = cal.solvers.evaluate(head, beta, Z=torch.as_tensor(Z[None]))
        assert abs(ev.certificate.lower_bound - bound) <= 1e-12 * abs(ref.value)
        assert abs(ev.value - value) <= 1e-12 * abs(ref.value)
        assert bound <= ref.value * (1 + 1e-9) and value >= ref_cert["lower_bound"] * (1 - 1e-12)
