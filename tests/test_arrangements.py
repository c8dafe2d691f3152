import numpy as np
import pytest

from cvxattn_lib import arrangements as arr


@pytest.mark.parametrize("n,d", [(6, 2), (10, 3), (9, 4)])
def test_enumeration_counts_regions_of_a_generic_arrangement(n, d):
    X = np.random.default_rng(n + d).standard_normal((n, d))
    D, G = arr.enumerate_patterns(X, drop_zero=False)
    assert D.shape[1] == arr.region_count_general_position(n, d)
    assert D.shape[1] <= arr.pattern_count_bound(n, d)
    # every returned gate really produces its pattern, and all patterns are distinct
    np.testing.assert_array_equal(X @ G >= 0, D)
    assert len({D[:, j].tobytes() for j in range(D.shape[1])}) == D.shape[1]


def test_sampled_patterns_are_among_the_enumerated():
    X = np.random.default_rng(0).standard_normal((12, 3))
    D_all, _ = arr.enumerate_patterns(X)
    all_keys = {D_all[:, j].tobytes() for j in range(D_all.shape[1])}
    found = []
    for n_gates in [50, 500, 5000]:
        D_s, _ = arr.patterns_from_gates(X, arr.sample_gates(3, n_gates, seed=1))
        assert {D_s[:, j].tobytes() for j in range(D_s.shape[1])} <= all_keys
        found.append(D_s.shape[1])
    # more gates find more regions, but small regions are rarely hit: sampling never finds more
    assert found[0] < found[1] < found[2] <= D_all.shape[1]


def test_sampling_is_seeded_and_drops_duplicates():
    X = np.random.default_rng(0).standard_normal((5, 2))
    a = arr.sample_gates(2, 50, seed=3)
    np.testing.assert_array_equal(a, arr.sample_gates(2, 50, seed=3))
    assert not np.array_equal(a, arr.sample_gates(2, 50, seed=4))
    D, G = arr.patterns_from_gates(X, a)
    assert D.shape[1] <= arr.region_count_general_position(5, 2)
    assert D.any(axis=0).all()


def test_bad_gates_shape_is_named():
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="gates"):
        arr.patterns_from_gates(X, np.ones((2, 5)))
