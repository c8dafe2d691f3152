import numpy as np

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
