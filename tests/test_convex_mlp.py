"""The two-layer convex programs on random small problems: optimum = best non-convex run, no run
below the certified lower bound, recovered weights reach the optimum, the certificate closes."""

import numpy as np
import pytest

import cvxattn_lib as cal
from cvxattn_lib.nonconvex import mlp_objective, repeat_gates, train_mlp

BETAS = [0.01, 0.1, 1.0]
SEEDS = [0, 1]
MATCH = 1e-6  # optimum vs best non-convex run, relative
RECOVER = 1e-8  # recovered weights vs optimum, relative
# certificate's relative gap at the solver's solution.  The dual point is the scaled loss gradient,
# so the bound is first-order in the gradient's error, i.e. in the square root of the primal
# objective's error: it needs solutions accurate to ~1e-14 (cal.solve picks solvers for that).
GAP = 1e-7
BELOW = 1e-10  # a run may sit below the certified lower bound only by round-off


def problem(seed, n, d, c):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, c))


def check_fit(fit, runs, X, Y, beta, activation, loss="squared"):
    cert = fit.certificate()
    value, lower = fit.value, cert["lower_bound"]
    # certificate: dual feasible point whose bound meets the primal value.  KKT: the gradient's
    # dual norm is beta at the optimum; a point whose objective is within GAP has a gradient within
    # O(sqrt(GAP)) (objective errors are second order), hence the square root.
    assert cert["dual_norm"] <= beta * (1 + np.sqrt(GAP))
    assert -1e-9 <= cert["rel_gap"] <= GAP, cert
    # recovered weights reach the optimum in the non-convex network
    w = fit.weights()
    assert abs(mlp_objective(w, X, Y, beta, activation, loss) - value) <= RECOVER * value
    # the best non-convex run reaches the optimum, and no run goes below the certified bound
    objs = np.array([r.objective for r in runs])
    assert objs.min() >= lower - BELOW * abs(lower), (objs.min(), lower)
    assert abs(objs.min() - value) <= MATCH * value, (objs.min(), value)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", BETAS)
def test_linear_equals_nonconvex(seed, beta):
    X, Y = problem(seed, n=12, d=4, c=3)
    fit = cal.convex.fit_mlp(X, Y, beta, activation="linear")
    runs = train_mlp(X, Y, beta, "linear", m=min(4, 3) + 1, restarts=5, seed=seed,
                     progress=False)
    check_fit(fit, runs, X, Y, beta, "linear")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", BETAS)
def test_gated_relu_equals_nonconvex(seed, beta):
    X, Y = problem(seed, n=10, d=3, c=2)
    fit = cal.convex.fit_mlp(X, Y, beta, activation="gated_relu", n_gates=6, seed=seed)
    gates = repeat_gates(fit.G, per_gate=min(3, 2) + 1)
    runs = train_mlp(X, Y, beta, "gated_relu", gates=gates, restarts=4, seed=seed,
                     max_iter=4000, progress=False)
    check_fit(fit, runs, X, Y, beta, "gated_relu")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", BETAS)
def test_relu_equals_nonconvex(seed, beta):
    X, Y = problem(seed, n=8, d=3, c=1)
    fit = cal.convex.fit_mlp(X, Y, beta, activation="relu")  # every pattern enumerated: exact
    runs = train_mlp(X, Y, beta, "relu", m=2 * 8, restarts=10, seed=seed,
                     optimizer="adam+lbfgs", max_iter=20_000, progress=False)
    check_fit(fit, runs, X, Y, beta, "relu")


@pytest.mark.parametrize("activation", ["linear", "gated_relu"])
def test_cross_entropy_equals_nonconvex(activation):
    rng = np.random.default_rng(3)
    X, labels = rng.standard_normal((15, 3)), rng.integers(0, 3, size=15)
    beta = 0.5
    fit = cal.convex.fit_mlp(X, labels, beta, activation=activation, n_gates=5, seed=3,
                             loss="cross_entropy")
    kw = dict(gates=repeat_gates(fit.G, 4)) if activation == "gated_relu" else dict(m=4)
    runs = train_mlp(X, labels, beta, activation, restarts=4, seed=3, loss="cross_entropy",
                     progress=False, **kw)
    check_fit(fit, runs, X, labels, beta, activation, loss="cross_entropy")


def test_too_few_neurons_stay_above_the_optimum():
    """Negative control: a linear network narrower than rank(Z*) cannot reach the optimum."""
    X, noise = problem(4, n=20, d=4, c=4)
    Y = X @ np.diag([3.0, 2.0, 1.5, 1.0]) + 0.1 * noise  # every direction of Z* matters
    beta = 0.01
    fit = cal.convex.fit_mlp(X, Y, beta, activation="linear")
    rank = fit.n_neurons
    assert rank == 4
    runs = train_mlp(X, Y, beta, "linear", m=rank - 1, restarts=4, progress=False)
    assert min(r.objective for r in runs) > fit.value * (1 + 1e-3)


def test_certificate_detects_a_suboptimal_point():
    """Perturbing the solution keeps the bound below the optimum and opens the gap."""
    X, Y = problem(5, n=12, d=3, c=2)
    fit = cal.convex.fit_mlp(X, Y, 0.1, activation="linear")
    best = fit.value
    fit.Z[0] = fit.Z[0] + 0.05
    fit.__dict__.pop("value")  # cached_property: recompute at the perturbed point
    cert = fit.certificate()
    assert cert["value"] > best
    assert cert["lower_bound"] <= best * (1 + 1e-12)
    assert cert["rel_gap"] > 1e-4


def test_relu_sampled_patterns_are_a_restriction():
    """Sampling fewer patterns can only raise the ReLU optimum (a restriction of the exact one)."""
    X, Y = problem(6, n=10, d=3, c=1)
    exact = cal.convex.fit_mlp(X, Y, 0.1, activation="relu")
    sampled = cal.convex.fit_mlp(X, Y, 0.1, activation="relu", n_gates=4, seed=0)
    assert sampled.value >= exact.value * (1 - 1e-8)
    assert sampled.D.shape[1] < exact.D.shape[1]


def test_predict_matches_prediction_on_training_data():
    X, Y = problem(7, n=10, d=3, c=1)
    for activation in ["linear", "gated_relu", "relu"]:
        fit = cal.convex.fit_mlp(X, Y, 0.1, activation=activation, n_gates=8)
        np.testing.assert_allclose(fit.predict(X), fit.prediction(), rtol=1e-7, atol=1e-8)


def test_passed_gates_are_the_ones_used():
    X, Y = problem(8, n=10, d=3, c=2)
    gates = cal.arrangements.sample_gates(3, 5, seed=11)
    fit = cal.convex.fit_mlp(X, Y, 0.1, activation="gated_relu", gates=gates)
    G = fit.weights()["G"]
    for j in range(G.shape[1]):
        assert np.any(np.all(np.isclose(gates, G[:, [j]]), axis=0))


def test_relu_finite_dual_meets_the_convex_program():
    """Strong duality: the finite dual (an SOCP through cone duality) has the primal's optimum,
    and its solution is the primal residual y_hat - y."""
    X, Y = problem(9, n=8, d=3, c=1)
    fit = cal.convex.fit_mlp(X, Y, 0.1, activation="relu")
    d_star, v_star = cal.convex.mlp.solve_relu_dual(X, Y[:, 0], 0.1)
    assert abs(d_star - fit.value) <= 1e-7 * fit.value
    np.testing.assert_allclose(v_star, fit.prediction()[:, 0] - Y[:, 0], atol=1e-5)
    with pytest.raises(ValueError, match="y"):
        cal.convex.mlp.solve_relu_dual(X, Y[:5, 0], 0.1)


def test_certificate_of_any_network_brackets_the_optimum():
    """certify_point: the fit's own prediction gives its certificate; a narrow trained network's
    bound stays below p* and its gap covers its excess over p*."""
    X, Y = problem(10, n=10, d=3, c=1)
    fit = cal.convex.fit_mlp(X, Y, 0.1, activation="relu")
    own = fit.certify_point(fit.prediction(), fit.value)
    assert own.lower_bound == pytest.approx(fit.certificate()["lower_bound"], rel=1e-12)
    run = train_mlp(X, Y, 0.1, "relu", m=1, restarts=2, seed=0, progress=False)[0]
    cert = fit.certify_point(run.model.predict(X), run.objective)
    assert cert.lower_bound <= fit.value * (1 + 1e-9)
    assert cert.gap >= run.objective - fit.value - 1e-9
    with pytest.raises(ValueError, match="value"):
        fit.certify_point(fit.prediction(), float("nan"))
    with pytest.raises(ValueError, match="prediction"):
        fit.certify_point(np.zeros(3), 1.0)
