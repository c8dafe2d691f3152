import numpy as np
import pytest

from cvxattn_lib import clustering as cl


def test_adjusted_rand_index_known_values():
    assert cl.adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    assert abs(cl.adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) + 0.5) < 1e-12
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 3000), rng.integers(0, 3, 3000)
    assert abs(cl.adjusted_rand_index(a, b)) < 0.01  # chance level


def test_spectral_clusters_recover_a_block_affinity():
    labels = np.repeat([0, 1, 2], 4)
    A = (labels[:, None] == labels[None]).astype(float) + 0.05
    assert cl.adjusted_rand_index(cl.spectral_clusters(A, 3), labels) == 1.0


def test_planted_clusters_are_separated_by_inner_products():
    X, Y, C = cl.planted_clusters(n=5, s=10, d=4, K=3, noise=0.05, seed=1)
    same = C[:, :, None] == C[:, None, :]
    inner = np.einsum("ntd,nud->ntu", X, X)
    assert inner[same].min() > 0 > inner[~same].max()
    np.testing.assert_allclose(Y, np.einsum("ntu,nud->ntd", same, X) / 10)


def test_affinity_is_the_norm_of_each_keys_contribution_to_the_output():
    import torch

    from cvxattn_lib.nonconvex.attention import MultiHeadAttention

    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 5, 3))
    w = {"W1": rng.standard_normal((2, 3, 3)), "W2": rng.standard_normal((2, 3, 2))}
    aff = cl.attention_affinity(w, "linear", X)
    # the contributions sum over keys to the layer's output
    S = np.einsum("nta,mak,nuk->nmtu", X, w["W1"], X)
    contrib = np.einsum("nmtu,nua,mac->ntuc", S, X, w["W2"])
    out = MultiHeadAttention.from_weights(w, "linear")(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_allclose(contrib.sum(2), out, rtol=1e-12, atol=1e-12)
    norms = np.linalg.norm(contrib, axis=-1)
    np.testing.assert_allclose(aff, 0.5 * (norms + norms.transpose(0, 2, 1)), rtol=1e-12)


def test_planted_samples_hold_every_cluster():
    _, _, C = cl.planted_clusters(n=20, s=7, d=3, K=3, seed=2)
    assert all(set(row) == {0, 1, 2} for row in C)
    np.testing.assert_array_equal(np.sort(np.bincount(C[0])), [2, 2, 3])
    with pytest.raises(ValueError, match="s must be >= K"):
        cl.planted_clusters(s=2, K=3)
