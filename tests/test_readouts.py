"""Readouts of the token-mixing heads (cal.cifar.readouts): the mean-pooled circulant FNO head is a
linear model on the token mean (exactly, at every Z, and at the optimum with a Frobenius penalty),
the token readout keeps the program convex and its certificate valid, and the flattened-token
linear baseline (``linear_flat``) separates knowing positions from mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvxattn_lib import solvers
from cvxattn_lib.cifar import heads as hmod
from cvxattn_lib.cifar import readouts as ro
from cvxattn_lib.nonconvex.training import fit_lbfgs


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def _data(n=40, s=4, d=3, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, s, d)), rng.integers(0, c, n)


def _position_task(n, seed, s=4, d=2, noise=0.5):
    """Two classes told apart by the sign of token 0 minus token 1 in channel 0; the two carry
    opposite signs, so the token mean has no signal at all (channel 0 of the mean is pure noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = noise * rng.standard_normal((n, s, d))
    sign = 2.0 * y - 1.0
    X[:, 0, 0] += sign
    X[:, 1, 0] -= sign
    return X, y


def test_mean_pooled_fno_is_linear_in_the_token_mean_at_every_Z():
    """mean_t (k * X)_t = x_bar sum_tau K_tau for any kernel (circulant), and x_bar R_0 for the
    spectral head (only the zero mode reaches the token mean): round-off only."""
    X, y = _data()
    n, s, d = X.shape
    c = 3
    rng = np.random.default_rng(5)
    head = solvers.FNOTorchHead.build(X, y, "circulant", None, None, 0, "cross_entropy", "cpu", torch.float64)
    Z = torch.as_tensor(rng.standard_normal((1, s, d * c)))
    want = X.mean(1) @ Z[0].numpy().reshape(s, d, c).sum(0)
    assert np.abs(head.forward(Z).numpy() - want).max() <= 1e-13 * np.abs(want).max()
    spec = solvers.FNOTorchHead.build(X, y, "spectral", None, None, 0, "cross_entropy", "cpu", torch.float64)
    K = s // 2 + 1
    R = torch.as_tensor(rng.standard_normal((K, d, c)) + 1j * rng.standard_normal((K, d, c)))
    R[0] = R[0].real.to(R.dtype)  # the zero mode of a real signal is real
    want = X.mean(1) @ R[0].real.numpy()
    assert np.abs(spec.forward(R).numpy() - want).max() <= 1e-13 * np.abs(want).max()


def test_fitted_fno_equals_the_linear_head_on_the_token_mean():
    r"""At the optimum: logits = x_bar W (W = sum_tau K_tau) to 1e-10, K is the constant kernel
    1 w^T / s (rank one), the FNO optimum equals min_W CE + beta/sqrt(s) ||W||_F, and the ``linear``
    head (penalty beta_lin/2 ||W||_F^2) at beta_lin = beta / (sqrt(s) ||W||_F) has the same W."""
    X, y = _data()
    n, s, d = X.shape
    beta = 2.0
    fit = solvers.fit_head("fno", X, y, beta, loss="cross_entropy", device="cpu", tol=1e-11,
                           max_iter=20000, progress=False)
    assert fit.converged and 0 <= fit.rel_gap <= 1e-11
    W = ro.collapsed_linear(fit)
    logits = fit.prediction()
    assert np.abs(X.mean(1) @ W - logits).max() <= 1e-10 * np.abs(logits).max()
    K = ro.circulant_kernel(fit).reshape(s, -1)
    assert np.abs(K - W.reshape(1, -1) / s).max() <= 1e-5 * np.abs(W).max()
    # the group-penalised linear program: below the FNO value at the FNO's own W (||K||_* >= ||W||/sqrt s)
    # and above the certified lower bound (it is the same optimum)
    Xbar = X.mean(1)
    group_fno = ro.group_penalty_objective(Xbar, y, W, beta, s)
    assert fit.lower_bound <= group_fno <= fit.value * (1 + 1e-14)
    # the linear head at the matched beta_lin (solved independently, L-BFGS) reaches the same optimum
    beta_lin = ro.equivalent_linear_beta(W, beta, s)
    model = hmod.LinearHead(d, 3)
    fit_lbfgs(model, torch.as_tensor(Xbar), torch.as_tensor(y), beta_lin, "cross_entropy", tol=1e-15)
    W_lin = model.W.detach().numpy()
    group_lin = ro.group_penalty_objective(Xbar, y, W_lin, beta, s)
    assert fit.lower_bound * (1 - 1e-14) <= group_lin <= fit.lower_bound * (1 + 1e-10)
    assert np.abs(W_lin - W).max() <= 1e-6 * np.abs(W).max()
    # the linear head's optimal value is the FNO optimum minus beta / (2 sqrt s) ||W||_F
    lin_value = group_lin - beta / np.sqrt(s) * np.linalg.norm(W_lin) + beta_lin / 2 * np.sum(W_lin ** 2)
    assert abs(lin_value - (fit.value - beta / (2 * np.sqrt(s)) * np.linalg.norm(W))) <= 1e-8 * fit.value


@pytest.mark.parametrize("kind,activation", [("fno_token", "circulant"), ("fno_token", "spectral"),
                                             ("mixer_token", "linear"), ("mixer_token", "gated_relu")])
def test_token_readout_is_linear_in_Z_with_its_adjoint(kind, activation):
    """<V, A(Z)> = <A*(V), Z>: the token readout keeps the head linear in Z (so the program stays
    convex and the Fenchel certificate, built from A and its adjoint, stays valid)."""
    X, y = _data(n=12)
    head = solvers.HEADS[kind].build(X, y, activation, None, 2 if activation == "gated_relu" else None, 0,
                                     "cross_entropy", "cpu", torch.float64)
    rng = np.random.default_rng(3)
    zd = head.zdtype()
    Z = torch.as_tensor(rng.standard_normal(head.shape)).to(zd)
    if head.complex:
        Z = Z + 1j * torch.as_tensor(rng.standard_normal(head.shape))
    out = head.forward(Z)
    assert out.shape == (12, 3)
    V = torch.as_tensor(rng.standard_normal(tuple(out.shape)))
    lhs = float((V * out.real).sum())
    adj = head.adjoint(V)
    rhs = float((adj.conj() * Z).real.sum()) if head.complex else float((adj * Z).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)
    Z2 = torch.as_tensor(rng.standard_normal(head.shape)).to(zd)
    assert torch.allclose(head.forward(Z + 2 * Z2), out + 2 * head.forward(Z2), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="readout='token' is for loss='cross_entropy'"):
        solvers.HEADS[kind].build(X, np.zeros((12, 4, 3)), activation, None, None, 0, "squared", "cpu",
                                  torch.float64)


def test_token_readout_certificate_brackets_the_cvxpy_optimum():
    r"""Under the token readout the circulant head is sum_u X_u K_{-u}: a linear model on the flattened
    tokens with beta ||K||_* (K (s, d c)); CVXPY's optimum of that program lies between the torch
    fit's certified lower bound and its value."""
    import cvxpy as cp

    from cvxattn_lib.cvxpy_solve import solve

    X, y = _data(n=20, s=3, d=2, c=2)
    n, s, d = X.shape
    c, beta = 2, 1.0
    fit = solvers.fit_head("fno_token", X, y, beta, loss="cross_entropy", device="cpu", tol=1e-9,
                           max_iter=20000, progress=False)
    assert fit.lower_bound <= fit.value and fit.rel_gap <= 1e-9
    K = cp.Variable((s, d * c))
    logits = sum(X[:, (-tau) % s, :] @ cp.reshape(K[tau], (d, c), order="C") for tau in range(s))
    ce = cp.sum(cp.log_sum_exp(logits, axis=1)) - cp.sum(cp.multiply(np.eye(c)[y], logits))
    prob = cp.Problem(cp.Minimize(ce + beta * cp.normNuc(K)))
    solve(prob)
    assert fit.lower_bound - 1e-6 * fit.value <= prob.value <= fit.value + 1e-6 * fit.value
    # and the fit's logits are the CVXPY model's logits at the fit's K
    Kf = ro.circulant_kernel(fit)
    mine = sum(X[:, (-tau) % s, :] @ Kf[tau] for tau in range(s))
    assert np.abs(mine - fit.prediction()).max() <= 1e-12 * np.abs(mine).max()


def test_token_readout_breaks_the_collapse_on_a_position_task():
    """A constructed task (seed 0) whose token mean carries no signal: the token-mean linear head and
    the mean-pooled FNO head stay near chance, the FNO head with the token readout and the
    flattened-token linear baseline (the same model class, another regulariser) learn it."""
    Xtr, ytr = _position_task(200, seed=0)
    Xte, yte = _position_task(400, seed=1)
    kw = dict(device="cpu", progress=False, classes=2)
    top1 = {}
    runs = [("linear", {}), ("linear_flat", {}), ("fno", {}), ("fno@token", {"readout": "token"}),
            ("fno_token", {})]
    for name, extra in runs:
        r = hmod.train_head(name.split("@")[0], Xtr, ytr, Xte, yte, 1.0, **kw, **extra)
        assert r.rel_gap is not None and r.rel_gap <= 1e-5
        top1[name] = r.top1
    assert top1["linear"] <= 0.65 and top1["fno"] <= 0.65
    assert top1["fno@token"] >= 0.9 and top1["linear_flat"] >= 0.9
    assert top1["fno_token"] == top1["fno@token"]  # the registered head is fno with readout='token'


def test_linear_flat_trains_and_counts_one_weight_per_position():
    X, y = _data(n=30, s=4, d=3, c=3)
    r = hmod.train_head("linear_flat", X, y, X[:10], y[:10], 0.5, device="cpu", progress=False, classes=3)
    assert r.params == 4 * 3 * 3 and r.convex and r.tokens == 4 and r.features == 3
    assert -1e-12 * r.objective <= r.gap_bound <= 1e-7 * r.objective
    assert "linear_flat" in hmod.available_heads()
    from cvxattn_lib.cifar.cli import resolve_heads
    assert "linear_flat" in resolve_heads("all") and "linear_flat" in resolve_heads("available")


def test_readout_bad_values_name_the_argument():
    X, y = _data(n=10)
    kw = dict(device="cpu", progress=False, classes=3)
    with pytest.raises(ValueError, match="readout must be 'mean' or 'token'"):
        hmod.train_head("fno", X, y, X, y, 1.0, readout="max", **kw)
    with pytest.raises(ValueError, match="readout='token' is for the token-mixing heads"):
        hmod.train_head("linear", X, y, X, y, 1.0, readout="token", **kw)
    with pytest.raises(ValueError, match="head 'fno_token' takes no readout option"):
        hmod.train_head("fno_token", X, y, X, y, 1.0, readout="mean", **kw)
    with pytest.raises(ValueError, match="readout must be one of"):
        ro.readout_kind("fno", "max")
    with pytest.raises(ValueError, match="not 'self_attention'"):
        ro.readout_kind("self_attention", "token")


def test_tables_label_the_readout_and_ask_for_the_flattened_baseline():
    from cvxattn_lib.cifar.cli import format_table

    base = {"beta": 0.1, "top1": 0.5, "top5": 0.9, "params": 10, "train_time_s": 1.0, "device": "cpu",
            "convex": True, "rel_gap": 1e-7}
    rows = [dict(base, head="linear"), dict(base, head="fno", options={"readout": "token"})]
    for md in (False, True):
        text = format_table({"rows": rows}, markdown=md)
        assert "fno@token" in text and "no linear_flat row" in text
        text = format_table({"rows": rows + [dict(base, head="linear_flat")]}, markdown=md)
        assert "linear_flat" in text and "no linear_flat row" not in text
    assert "fno_token" in hmod.available_heads()


def test_fno_collapse_report_on_random_tokens():
    X, y = _data(n=30, s=5, d=3, c=3, seed=4)
    beta, s = 1.5, 5
    Xte, _ = _data(n=50, s=5, d=3, c=3, seed=6)
    r = ro.fno_collapse(X, y, beta, X_test=Xte)
    assert r.tokens == s and r.logits_max_diff <= 1e-10
    sv = r.kernel_singular_values
    assert sv[0] > 0 and np.all(sv[1:] <= 1e-6 * sv[0])  # rank one: the constant kernel
    assert r.fno_lower_bound <= r.group_value <= r.fno_value * (1 + 1e-14)
    assert r.beta_lin == pytest.approx(beta / (np.sqrt(s) * r.W_norm), rel=1e-15)
    # both optima certified; the linear head's equals the FNO's minus beta / (2 sqrt s) ||W||_F
    # (the bound and the value of an optimum found to 1e-15 may cross by round-off: 1 ulp seen)
    assert r.linear_lower_bound <= r.linear_value * (1 + 1e-14)
    assert r.linear_value <= r.linear_lower_bound + 1e-9 * r.linear_value
    shifted = r.fno_value - beta / (2 * np.sqrt(s)) * r.W_norm
    assert abs(r.linear_value - shifted) <= 1e-8 * r.fno_value
    assert r.W_max_diff <= 1e-6 and r.predictions_agree == 1.0 and r.test_predictions_agree == 1.0
    with pytest.raises(ValueError, match="X_test must be tokens"):
        ro.fno_collapse(X, y, beta, X_test=Xte[:, :2])
    with pytest.raises(ValueError, match="X must be tokens"):
        ro.fno_collapse(X[:, 0], y, beta)


@pytest.mark.parametrize("method", ["fista", "burer_monteiro"])
@pytest.mark.parametrize("kind,activation", [("fno_token", "circulant"), ("fno_token", "spectral"),
                                             ("mixer_token", "gated_relu"), ("fno", "circulant")])
def test_head_logits_rebuilds_the_fitted_map_on_new_tokens(kind, activation, method):
    """head_logits (the test-set path of a non-mean readout) on the training tokens gives the
    solver's own training outputs: same Z or factors, same gates, masks recomputed from X."""
    import warnings

    X, y = _data(n=16)
    extra = {"n_gates": 2} if activation == "gated_relu" else {}
    extra.update({"epochs": 5} if method == "burer_monteiro" else {"max_iter": 50})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # not converged: irrelevant to the map
        fit = solvers.fit_head(kind, X, y, 1.0, method=method, activation=activation, loss="cross_entropy",
                               device="cpu", progress=False, **extra)
    want = fit.prediction()
    assert np.abs(ro.head_logits(fit, X) - want).max() <= 1e-12 * np.abs(want).max()
