"""Regularisation paths (``cal.solvers.regularisation_path``): the optima along a β grid equal the
CVXPY programs at the same β, every point carries a float64 certificate that holds, a warm start
reaches the same optimum as a cold one, and the on-disk cache gives back the same path.

Comparison with CVXPY: both values are objective values of feasible points, so each is at least p*,
and each certificate's lower bound is at most p*; hence
``|v_path - v_cvxpy| <= max(v_path - lb_cvxpy, v_cvxpy - lb_path)`` is a theorem (tested, with a
round-off allowance of 1e-12 relative), and the house tolerance, relative 1e-6, is tested too.
"""

import numpy as np
import pytest

import cvxattn_lib as cal
from cvxattn_lib import clustering as cl

HOUSE = 1e-6  # relative agreement of optima with CVXPY
ROUND = 1e-12  # round-off allowance on the certified bound (relative)


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CVXATTN_DATA", str(tmp_path))


def toy_tokens(n=6, s=4, d=2, c=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, s, d))
    return X, rng.standard_normal((n, s, c))


CASES = {
    "attention-linear": ("self_attention", "linear", None,
                         lambda: cl.planted_clusters(n=8, s=4, d=2, K=2, seed=0)[:2],
                         lambda X, Y, b: cal.convex.fit_self_attention(X, Y, b)),
    "attention-gated": ("self_attention", "gated_relu", 3,
                        lambda: cl.routing_clusters(n=8, s=6, K=3, noise=0.1, seed=0)[:2],
                        lambda X, Y, b: cal.convex.fit_self_attention(X, Y, b, activation="gated_relu",
                                                                      n_gates=3)),
    "mixer-linear": ("mixer", "linear", None, lambda: toy_tokens(),
                     lambda X, Y, b: cal.convex.fit_mixer(X, Y, b)),
    "fno-circulant": ("fno", "circulant", None, lambda: toy_tokens(s=6),
                      lambda X, Y, b: cal.convex.fit_fno(X, Y, b, "circulant")),
    "fno-spectral": ("fno", "spectral", None, lambda: toy_tokens(s=6),
                     lambda X, Y, b: cal.convex.fit_fno(X, Y, b, "spectral")),
    "mlp-gated": ("mlp", "gated_relu", 8, lambda: cal.toydata.two_class_2d(n=12, seed=0),
                  lambda X, Y, b: cal.convex.fit_mlp(X, Y, b, "gated_relu", n_gates=8)),
    "mlp-relu": ("mlp", "relu", None, lambda: cal.toydata.two_class_2d(n=10, seed=0),
                 lambda X, Y, b: cal.convex.fit_mlp(X, Y, b, "relu")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_path_equals_cvxpy_at_each_beta(case):
    kind, activation, n_gates, make_data, cvx = CASES[case]
    X, Y = make_data()
    path = cal.solvers.regularisation_path(kind, X, Y, n_betas=4, eps=1e-2, activation=activation,
                                           n_gates=n_gates, progress=False, cache=False)
    assert path.method == ("cvxpy" if activation == "relu" else "admm")
    assert np.all(np.diff(path.betas) > 0)
    assert path.betas[-1] == pytest.approx(path.beta_max, rel=1e-12)  # the default grid ends there
    for k, beta in enumerate(path.betas):
        ref = cvx(X, Y, float(beta)).certificate()
        got = path.fits[k].certificate()
        assert got["value"] == path.values[k] and got["lower_bound"] == path.lower_bounds[k]
        assert path.lower_bounds[k] <= path.values[k] * (1 + ROUND)  # the certificate holds
        assert path.rel_gaps[k] <= 1e-7  # the default tol, reached at every point
        bound = max(got["value"] - ref["lower_bound"], ref["value"] - got["lower_bound"])
        assert abs(got["value"] - ref["value"]) <= bound + ROUND * ref["value"]
        assert got["value"] == pytest.approx(ref["value"], rel=HOUSE, abs=1e-12)
    # at beta_max the optimum is Z = 0 (value L(0) = ||Y||^2 / 2); FISTA returns it exactly,
    # certified without iterating
    assert path.values[-1] == pytest.approx(0.5 * np.sum(np.asarray(Y, float) ** 2), rel=HOUSE)
    if activation != "relu":
        assert all(np.count_nonzero(z) == 0 for z in path.fits[-1].Z)
        assert path.iterations[-1] == 0


def test_warm_start_reaches_the_cold_optimum_in_fewer_iterations():
    # notebook 02's toy on 16 points over three decades: neighbours close enough for a warm start
    # to matter (on 6 points of a tiny gated toy ADMM needs 30-80 iterations a point either way)
    X, Y = cal.toydata.attention_teacher(n=12, s=4, d=3, c=2, heads=2, noise=0.05, seed=0)[:2]
    opts = dict(activation="linear", n_betas=16, eps=1e-3, progress=False, cache=False)
    warm = cal.solvers.regularisation_path("self_attention", X, Y, **opts)
    cold = cal.solvers.regularisation_path("self_attention", X, Y, warm_start=False, **opts)
    np.testing.assert_array_equal(warm.betas, cold.betas)
    for k in range(len(warm.betas)):  # the same optimum, within both certificates
        bound = max(warm.values[k] - cold.lower_bounds[k], cold.values[k] - warm.lower_bounds[k])
        assert abs(warm.values[k] - cold.values[k]) <= bound + ROUND * cold.values[k]
    assert warm.iterations.sum() < cold.iterations.sum()


def test_admm_and_fista_reach_the_same_optima():
    X, Y = toy_tokens()
    opts = dict(n_betas=4, eps=1e-2, progress=False, cache=False)
    admm = cal.solvers.regularisation_path("mixer", X, Y, **opts)
    fista = cal.solvers.regularisation_path("mixer", X, Y, solver="fista", **opts)
    assert (admm.method, fista.method) == ("admm", "fista")
    for k in range(len(admm.betas)):
        bound = max(admm.values[k] - fista.lower_bounds[k], fista.values[k] - admm.lower_bounds[k])
        assert abs(admm.values[k] - fista.values[k]) <= bound + ROUND * fista.values[k]
    labels = np.arange(len(X)) % 2  # cross-entropy has no Gram form: FISTA only
    with pytest.raises(ValueError, match="solver='admm'"):
        cal.solvers.regularisation_path("mixer", X, labels, loss="cross_entropy", solver="admm", **opts)
    ce = cal.solvers.regularisation_path("mixer", X, labels, loss="cross_entropy", **opts)
    assert ce.method == "fista" and np.all(ce.rel_gaps <= 1e-7)
    spectral = {m: cal.solvers.regularisation_path("fno", X, Y, activation="spectral", solver=m, **opts)
                for m in ("admm", "fista")}
    np.testing.assert_allclose(spectral["admm"].values, spectral["fista"].values, rtol=2e-7)


def test_cache_gives_back_the_same_path(tmp_path):
    X, Y = toy_tokens()
    first = cal.solvers.regularisation_path("mixer", X, Y, betas=[0.1, 1.0], progress=False)
    assert not first.cached and first.cache_file.startswith(str(tmp_path / "cache" / "paths"))
    again = cal.solvers.regularisation_path("mixer", X, Y, betas=[1.0, 0.1], progress=False)
    assert again.cached and again.cache_file == first.cache_file
    np.testing.assert_array_equal(again.values, first.values)
    for a, b in zip(again.fits, first.fits):
        np.testing.assert_array_equal(a.Z[0], b.Z[0])
    # other data, another file; nothing half-written left behind
    other = cal.solvers.regularisation_path("mixer", X, 2 * Y, betas=[0.1, 1.0], progress=False)
    assert not other.cached and other.cache_file != first.cache_file
    assert not [p for p in (tmp_path / "cache" / "paths").iterdir() if p.suffix != ".npz"]
    # a damaged file is recomputed
    with open(first.cache_file, "wb") as fh:
        fh.write(b"not a npz")
    again = cal.solvers.regularisation_path("mixer", X, Y, betas=[0.1, 1.0], progress=False)
    assert not again.cached and np.allclose(again.values, first.values, rtol=1e-12)


def test_grid_lookup_and_log_grid():
    grid = cal.solvers.log_grid(1e-3, 10.0, 0.1)
    assert len(grid) == 41 and grid[0] == pytest.approx(1e-3) and grid[-1] == pytest.approx(10.0)
    assert np.any(np.isclose(grid, 0.1, rtol=1e-12))
    X, Y = toy_tokens()
    path = cal.solvers.regularisation_path("fno", X, Y, betas=[0.1, 1.0], progress=False, cache=False)
    assert path.index(0.1 * (1 + 1e-9)) == 0 and path.index(0.3) is None
    assert path.fit(1.0) is path.fits[1] and path.nearest(0.9) is path.fits[1]
    with pytest.raises(KeyError, match="not on the path's grid"):
        path.fit(0.3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="nope"), "kind"), (dict(betas=[0.1, -1.0]), "betas"), (dict(tol=0.0), "tol"),
    (dict(betas=[]), "betas"), (dict(loss="hinge"), "loss"),
    (dict(solver="newton"), "solver")])
def test_bad_input_names_the_argument(kwargs, match):
    X, Y = toy_tokens()
    args = dict(kind="mixer", X=X, Y=Y, betas=[0.1], progress=False, cache=False) | kwargs
    with pytest.raises(ValueError, match=match):
        cal.solvers.regularisation_path(**args)


def test_gram_form_from_the_design_equals_the_heads_gram():
    """ADMM's Gram form built by one numpy product from the design equals the head's own Gram
    blocks (``head.gram``, through ``fista._Quadratic``), and its eigenvalues are >= 0."""
    import torch

    from cvxattn_lib.solvers.fista import _Quadratic
    from cvxattn_lib.solvers.heads import HEADS
    from cvxattn_lib.solvers.paths import GramForm

    X, Y = cl.routing_clusters(n=8, s=6, K=3, noise=0.1, seed=0)[:2]
    head = HEADS["self_attention"].build(X, Y, "gated_relu", None, 3, 0, "squared", torch.device("cpu"),
                                         torch.float64)
    ref, got = GramForm.of_head(_Quadratic(head, None)), GramForm.of_design(head)
    scale = np.abs(ref.H2).max()
    np.testing.assert_allclose(got.H2, ref.H2, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(got.b, ref.b, rtol=0, atol=1e-13 * np.abs(ref.b).max())
    assert got.yy == pytest.approx(ref.yy, rel=1e-13) and got.shape == ref.shape
    lam, Q = got.spectrum()
    assert np.all(lam >= 0) and got.spectrum() is got.eig  # computed once
    np.testing.assert_allclose((Q * lam) @ Q.T, got.H2, rtol=0, atol=1e-12 * scale)


def test_admm_warm_start_predicts_a_path_linear_in_log_beta():
    """The warm start extrapolates W and Λ/β linearly in log β from the last two points (exact for
    such a path), scales the dual by β/β_prev from one point, and is cold without one."""
    from cvxattn_lib.solvers.paths import _admm_start

    rng = np.random.default_rng(0)
    A, B, C, D = (rng.standard_normal((2, 3)) for _ in range(4))
    W = lambda b: A + np.log(b) * B  # noqa: E731
    L = lambda b: b * (C + np.log(b) * D)  # noqa: E731
    Z0, dual0 = _admm_start([(2.0, W(2.0), L(2.0)), (1.0, W(1.0), L(1.0))], 0.5)
    np.testing.assert_allclose(Z0, W(0.5), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dual0, L(0.5), rtol=1e-13, atol=1e-13)
    Z0, dual0 = _admm_start([(1.0, W(1.0), L(1.0))], 0.5)
    np.testing.assert_array_equal(Z0, W(1.0))
    np.testing.assert_allclose(dual0, 0.5 * L(1.0), rtol=1e-15)
    assert _admm_start([], 0.5) == (None, None)
