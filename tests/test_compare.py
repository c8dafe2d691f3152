"""cal.cifar.compare: β as a fraction of each head's reference, seeds with spread, matched budgets,
token-group agreement; float64 checks of the references against their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from cvxattn_lib import solvers
from cvxattn_lib.cifar import compare as C
from cvxattn_lib.cifar.heads import pooled

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def tokens(n=24, s=4, d=3, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    X = rng.standard_normal((n, s, d)) + 0.8 * np.eye(c, d)[y][:, None, :]
    return X, y


def nuclear_linear(Phi, y, c, beta):
    """argmin_W sum_i CE(phi_i W, y_i) + beta ||W||_* by CVXPY (small problems)."""
    import cvxpy as cp

    W = cp.Variable((Phi.shape[1], c))
    U = Phi @ W
    E = np.eye(c)[y]
    loss = cp.sum(cp.log_sum_exp(U, axis=1)) - cp.sum(cp.multiply(E, U))
    cp.Problem(cp.Minimize(loss + beta * cp.normNuc(W))).solve()
    return W.value


def test_linear_reference_is_where_the_nuclear_norm_solution_becomes_zero():
    X, y = tokens()
    Phi = X.mean(1)
    ref = C.linear_reference(Phi, y, 3)
    assert np.abs(nuclear_linear(Phi, y, 3, 1.05 * ref)).max() < 1e-6
    assert np.abs(nuclear_linear(Phi, y, 3, 0.8 * ref)).max() > 1e-3


def test_reference_beta_of_each_kind_of_head():
    X, y = tokens()
    ref, what = C.reference_beta("attention_linear", X, y, 3)
    assert what == "its β_max"
    assert ref == pytest.approx(solvers.beta_max("self_attention", X, y, loss="cross_entropy"), rel=1e-12)
    ref, _ = C.reference_beta("mlp_gated_relu", X, y, 3, seed=2, solver_options={"n_gates": 5})
    want = solvers.beta_max("mlp", pooled(X), y, n_gates=5, seed=2, loss="cross_entropy")
    assert ref == pytest.approx(want, rel=1e-12)
    X32 = X.astype(np.float32).astype(np.float64)  # the linear heads see float32 features
    assert C.reference_beta("linear_flat", X32, y, 3)[0] == pytest.approx(
        C.linear_reference(X32.reshape(len(y), -1), y, 3), rel=1e-12)
    lin = C.reference_beta("linear", X, y, 3)[0]
    assert C.reference_beta("attention_softmax", X, y, 3) == (lin, "that of linear")
    gated = C.reference_beta("mlp_gated_relu", X, y, 3, seed=1)[0]
    assert C.reference_beta("mlp_relu", X, y, 3, seed=1) == (gated, "that of mlp_gated_relu")
    with pytest.raises(ValueError, match="unknown head"):
        C.reference_beta("nope", X, y, 3)


def test_mean_pooled_mixer_and_token_read_fno_differ_by_sqrt_s():
    """Derived in this collection: mean-pooled mixing is a flattened-token linear model with penalty
    beta sqrt(s) ||M||_*, fno_token one with beta ||M||_*: their beta_max differ by exactly sqrt(s)."""
    X, y = tokens(s=9)
    ratio = C.reference_beta("fno_token", X, y, 3)[0] / C.reference_beta("mixer", X, y, 3)[0]
    assert ratio == pytest.approx(3.0, rel=1e-10)


def test_spread_and_seed_subset():
    s = C.spread([1.0, 2.0, 4.0])
    assert s == {"mean": pytest.approx(7 / 3), "sd": pytest.approx(np.std([1, 2, 4], ddof=1)), "min": 1.0,
                 "max": 4.0, "n": 3}
    assert C.spread([5.0])["sd"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        C.spread([])
    a = C.seed_subset(10, 4, 0)
    assert len(set(a)) == 4 and np.array_equal(a, np.sort(a)) and np.array_equal(a, C.seed_subset(10, 4, 0))
    assert not np.array_equal(a, C.seed_subset(10, 4, 1))
    with pytest.raises(ValueError, match="more than"):
        C.seed_subset(3, 4, 0)


def test_compare_heads_fraction_seeds_and_matched_budgets():
    X, y = tokens(n=30)
    Xte, yte = tokens(n=12, seed=5)
    feats = {"train": X.astype(np.float32), "y_train": y, "test": Xte.astype(np.float32), "y_test": yte}
    heads = ["linear", "mlp_relu", "mlp_gated_relu", "attention_linear", "attention_softmax"]
    rows, models = C.compare_heads(feats, heads, 0.2, [0, 1], 20, 3, verbose=False, device="cpu", epochs=3,
                                   solver_options={"tol": 1e-4, "max_iter": 500},
                                   head_options={"mlp_gated_relu": {"solver_options": {"n_gates": 4}}})
    assert [(r["head"], r["seed"]) for r in rows] == [(h, s) for h in heads for s in (0, 1)]
    assert set(models) == {(h, s) for h in heads for s in (0, 1)}
    for r in rows:
        assert r["beta"] == pytest.approx(0.2 * r["beta_ref"], rel=1e-12) and r["fraction"] == 0.2
        assert r["n_train"] == 20 and r["n_test"] == 12
    for s in (0, 1):
        get = {r["head"]: r for r in rows if r["seed"] == s}
        for h, (_, partner) in C.BUDGET.items():
            assert get[h]["params"] == get[partner]["params"] > 0  # matched budgets
        idx = C.seed_subset(30, 20, s)
        ref, _ = C.reference_beta("attention_linear", X[idx].astype(np.float32), y[idx], 3, s)
        assert get["attention_linear"]["beta_ref"] == pytest.approx(ref, rel=1e-12)
    table = C.format_summary(rows, tol=1e-3)
    assert "mean ± sd" in table and "none (non-convex)" in table
    assert "NOT reached" in C.format_summary(rows, tol=1e-30)
    fig = C.plot_fraction_sweep(rows)
    assert fig.axes[0].get_xlabel().startswith("β / β_max")


def test_reference_groups_and_agreement():
    img = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    img[:, :, :, 4:] = 200  # right half bright
    b = C.brightness_groups(img, 4)
    assert b.shape == (2, 16) and b[0].reshape(4, 4)[:, 2:].all() and not b[0].reshape(4, 4)[:, :2].any()
    q = C.quadrant_groups(2, 4)
    assert q[0].reshape(4, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    agree = C.group_agreement({"a": q, "b": q, "c": b})
    assert agree[("a", "b")]["mean"] == 1.0 and set(agree) == {("a", "b"), ("a", "c"), ("b", "c")}
    # brightness (left/right) is coarser than quadrants: ARI strictly between 0 and 1
    assert 0 < agree[("a", "c")]["mean"] < 1
    assert "ARI" in C.format_agreement(agree)
    with pytest.raises(ValueError, match="same images"):
        C.group_agreement({"a": q, "b": q[:1]})
    with pytest.raises(ValueError, match="images must be"):
        C.brightness_groups(img[0], 4)


def test_cifar100_ready_says_why_not(tmp_path):
    ok, why = C.cifar100_ready(tmp_path)
    assert not ok and "cifar-100-python" in why


def test_token_group_plot_without_underlay_draws_the_groups_alone():
    from cvxattn_lib.cifar.explore import plot_token_groups

    img = np.zeros((3, 4, 4), dtype=np.uint8)
    labels = {"a": np.arange(16) % 2}
    with_grey = plot_token_groups(img, labels)
    alone = plot_token_groups(img, labels, underlay=False)
    assert len(with_grey.axes[1].images) == 2 and len(alone.axes[1].images) == 1
    assert alone.axes[1].images[0].get_alpha() == 1.0
