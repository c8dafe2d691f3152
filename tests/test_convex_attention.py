"""Self-attention convex programs on random small problems: the lifting identity, optimum = best
non-convex run, no run below the certified bound, recovery, certificate, too few heads."""

import numpy as np
import pytest

import cvxattn_lib as cal
from cvxattn_lib.convex.attention import attention_masks, block, design, lift
from cvxattn_lib.nonconvex import MultiHeadAttention, attention_objective, train_attention

# at beta = 0.01 the non-convex twin needs up to ~10^4 L-BFGS iterations (40-50 s) to come within
# 1e-6 of the optimum; 3000 suffice for the larger betas
BETAS = [0.01, 0.1, 1.0]
LBFGS_BUDGET = {0.01: 10_000, 0.1: 3000, 1.0: 3000}
SEEDS = [0, 1]
MATCH, RECOVER, GAP, BELOW = 1e-6, 1e-8, 1e-7, 1e-10


def problem(seed, n=20, s=4, d=3, c=2):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, s, d)), rng.standard_normal((n, s, c))


def test_lifting_identity_and_block_convention():
    """X W1 X^T X W2 = sum_{k,l} (X^T X)[k,l] X Z^{(k,l)} with Z = vec(W1) vec(W2)^T (row-major)."""
    rng = np.random.default_rng(0)
    s, d, c, m = 5, 3, 2, 4
    X = rng.standard_normal((s, d))
    W1, W2 = rng.standard_normal((m, d, d)), rng.standard_normal((m, d, c))
    Z = lift(W1, W2)
    assert Z.shape == (d * d, d * c)
    np.testing.assert_allclose(Z[0 * d + 1, 2 * c + 1], np.sum(W1[:, 0, 1] * W2[:, 2, 1]))
    direct = sum(X @ W1[j] @ X.T @ X @ W2[j] for j in range(m))
    gram = X.T @ X
    lifted = sum(gram[k, l] * X @ block(Z, k, l, d, c) for k in range(d) for l in range(d))
    np.testing.assert_allclose(lifted, direct, rtol=1e-12, atol=1e-12)
    via_design = design(X[None], None) @ Z.reshape(d**3, c)
    np.testing.assert_allclose(via_design, direct, rtol=1e-12, atol=1e-12)
    # gated heads: the masked design reproduces the gated layer
    G = rng.standard_normal((m, d, d))
    net = MultiHeadAttention.from_weights({"W1": W1, "W2": W2, "G": G}, "gated_relu")
    masks = attention_masks(X[None], G)  # (m, 1, s, s)
    per_head = sum(design(X[None], masks[j]) @ lift(W1[[j]], W2[[j]]).reshape(d**3, c)
                   for j in range(m))
    np.testing.assert_allclose(per_head, net.predict(X[None])[0], rtol=1e-12, atol=1e-12)
    # nuclear norm <= the heads' penalty, with equality for balanced SVD factors
    assert np.linalg.norm(Z, "nuc") <= 0.5 * (np.sum(W1**2) + np.sum(W2**2)) + 1e-12


def check_fit(fit, runs, X, Y, beta, activation, loss="squared"):
    cert = fit.certificate()
    assert cert["dual_norm"] <= beta * (1 + np.sqrt(GAP))
    assert -1e-9 <= cert["rel_gap"] <= GAP, cert
    w = fit.weights()
    assert abs(attention_objective(w, X, Y, beta, activation, loss) - fit.value) <= RECOVER * fit.value
    objs = np.array([r.objective for r in runs])
    assert objs.min() >= cert["lower_bound"] * (1 - BELOW), (objs.min(), cert["lower_bound"])
    assert abs(objs.min() - fit.value) <= MATCH * fit.value, (objs.min(), fit.value)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("activation", ["linear", "gated_relu"])
def test_attention_equals_nonconvex(activation, beta, seed):
    X, Y = problem(seed)
    fit = cal.convex.fit_self_attention(X, Y, beta, activation=activation, n_gates=3, seed=seed)
    # as many heads (per gate) as rank(Z_j*): extra heads make L-BFGS converge sublinearly
    w = fit.weights()
    kw = {"gates": w["G"]} if activation == "gated_relu" else {"m": fit.n_heads}
    runs = train_attention(X, Y, beta, activation, restarts=2, seed=seed,
                           max_iter=LBFGS_BUDGET[beta], progress=False, **kw)
    check_fit(fit, runs, X, Y, beta, activation)


@pytest.mark.parametrize("activation", ["linear", "gated_relu"])
def test_certificate_closes_at_small_beta(activation):
    X, Y = problem(2)
    fit = cal.convex.fit_self_attention(X, Y, 0.01, activation=activation, n_gates=3)
    cert = fit.certificate()
    assert -1e-9 <= cert["rel_gap"] <= GAP and cert["dual_norm"] <= 0.01 * (1 + np.sqrt(GAP))
    w = fit.weights()
    assert abs(attention_objective(w, X, Y, 0.01, activation) - fit.value) <= RECOVER * fit.value


def test_cross_entropy_on_pooled_logits():
    rng = np.random.default_rng(4)
    X, labels = rng.standard_normal((12, 3, 2)), rng.integers(0, 3, 12)
    fit = cal.convex.fit_self_attention(X, labels, 0.5, activation="linear", loss="cross_entropy")
    runs = train_attention(X, labels, 0.5, "linear", m=5, restarts=2, loss="cross_entropy",
                           progress=False)
    check_fit(fit, runs, X, labels, 0.5, "linear", loss="cross_entropy")


def test_too_few_heads_stay_above_the_optimum():
    """Negative control: fewer heads than rank(Z*) cannot reach the convex optimum."""
    X, noise = problem(3, n=20, s=4, d=2, c=2)
    rng = np.random.default_rng(3)
    teacher = MultiHeadAttention.from_weights(
        {"W1": rng.standard_normal((4, 2, 2)), "W2": rng.standard_normal((4, 2, 2))}, "linear")
    Y = teacher.predict(X) + 0.3 * noise  # a teacher with 4 strong heads: rank(Z*) >= 2 matters
    beta = 0.1
    fit = cal.convex.fit_self_attention(X, Y, beta, activation="linear")
    rank = fit.n_heads
    assert rank >= 2
    few = train_attention(X, Y, beta, "linear", m=rank - 1, restarts=3, progress=False)
    enough = train_attention(X, Y, beta, "linear", m=rank + 1, restarts=3, max_iter=6000,
                             progress=False)
    assert min(r.objective for r in few) > fit.value * (1 + 1e-4)
    assert abs(min(r.objective for r in enough) - fit.value) <= MATCH * fit.value


def test_heads_equal_rank_and_shrink_with_beta():
    X, Y = problem(5, n=15, s=4, d=2, c=2)
    ranks = [cal.convex.fit_self_attention(X, Y, b).n_heads for b in [0.01, 1.0, 30.0]]
    assert ranks[0] >= ranks[1] >= ranks[2]
    assert ranks[0] > ranks[2]


def test_passed_gates_are_used():
    X, Y = problem(6, n=8, s=3, d=2, c=1)
    gates = np.random.default_rng(1).standard_normal((2, 2, 2))
    fit = cal.convex.fit_self_attention(X, Y, 0.1, activation="gated_relu", gates=gates)
    G = fit.weights()["G"]
    assert all(any(np.allclose(g, h) for h in gates) for g in G)


@pytest.mark.parametrize("kwargs,match", [
    (dict(X=np.zeros((4, 3))), "X"),
    (dict(Y=np.zeros((5, 3, 1))), "Y"),
    (dict(beta=0.0), "beta"),
    (dict(activation="softmax"), "activation"),
    (dict(activation="gated_relu", gates=np.zeros((2, 3, 3))), "gates"),
    (dict(X=np.full((4, 3, 2), np.nan)), "X"),
])
def test_bad_inputs_name_the_argument(kwargs, match):
    X, Y = problem(0, n=4, s=3, d=2, c=1)
    args = dict(X=X, Y=Y, beta=0.1, activation="linear") | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        cal.convex.fit_self_attention(**args)


def test_relu_route_from_gated_heads():
    """The tractable ReLU route: gated heads read as a ReLU layer agree with the gated network
    wherever every score's sign matches its gate, and L-BFGS from there only lowers the ReLU
    objective; how far it lands from the best ReLU restarts is reported in notebook 03."""
    from cvxattn_lib import clustering as cl
    from cvxattn_lib.nonconvex import relu_from_gated

    X, Y, _ = cl.planted_clusters(n=8, s=4, d=2, K=2, noise=0.1, seed=0)
    fit = cal.convex.fit_self_attention(X, Y, 0.1, activation="gated_relu", n_gates=3, seed=0)
    w = fit.weights()
    as_read, run = relu_from_gated(w, X, Y, 0.1)
    assert as_read == pytest.approx(attention_objective({"W1": w["W1"], "W2": w["W2"]}, X, Y, 0.1,
                                                        "relu"), rel=1e-12)
    assert run.objective <= as_read * (1 + 1e-12)
    # with each head's gate equal to its own query-key matrix, gated ReLU *is* ReLU
    relu_as_gated = {"W1": w["W1"], "W2": w["W2"], "G": w["W1"]}
    assert attention_objective(relu_as_gated, X, Y, 0.1, "gated_relu") == pytest.approx(as_read,
                                                                                          rel=1e-12)
