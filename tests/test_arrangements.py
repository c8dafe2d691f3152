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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cones_2d_are_the_enumerated_patterns(seed):
    rng = np.random.default_rng(seed)
    for X in (rng.standard_normal((7, 2)),  # generic: 2n cones, no zero pattern needed
              np.abs(rng.standard_normal((5, 2))) + 0.1):  # a half-plane: the zero pattern occurs
        D, edges, mids = arr.cones_2d(X)
        E, _ = arr.enumerate_patterns(X, drop_zero=False)
        assert {D[:, j].tobytes() for j in range(D.shape[1])} == \
            {E[:, j].tobytes() for j in range(E.shape[1])}
        assert D.shape[1] == arr.region_count_general_position(X.shape[0], 2) == 2 * X.shape[0]
        assert np.all(np.diff(edges) > 0) and edges[-1] - edges[0] == pytest.approx(2 * np.pi)
        assert np.all((edges[:-1] < mids) & (mids < edges[1:]))
    assert not E.any(axis=0).all()  # the half-plane data has the all-zero pattern


def test_cones_2d_merges_lines_of_collinear_points():
    X = np.array([[1.0, 0.0], [-2.0, 0.0], [0.0, 1.0]])  # points 1 and 2 share a line
    D, _, _ = arr.cones_2d(X)
    assert D.shape[1] == 4
    with pytest.raises(ValueError, match="X"):
        arr.cones_2d(np.array([[0.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="X"):
        arr.cones_2d(np.ones((3, 3)))


def test_relu_dual_norm_is_the_maximum_over_the_sphere():
    rng = np.random.default_rng(3)
    X, v = rng.standard_normal((9, 3)), rng.standard_normal(9)
    exact = arr.relu_dual_norm(X, v)
    U = rng.standard_normal((3, 200_000))
    U /= np.linalg.norm(U, axis=0)
    sampled = np.abs(v @ np.maximum(X @ U, 0.0)).max()
    # sampling is a lower estimate, and a dense sample on the 2-sphere comes close
    assert sampled <= exact * (1 + 1e-12)
    assert sampled >= exact * (1 - 1e-3)
    # the maximiser: on some pattern's cone the bound is attained by a feasible unit vector
    assert arr.relu_dual_norm(X, np.zeros(9)) == 0.0
    with pytest.raises(ValueError, match="v"):
        arr.relu_dual_norm(X, np.ones(4))


def test_arrangement_figure_labels_every_cone():
    import matplotlib

    matplotlib.use("Agg")
    from cvxattn_lib import plots

    X = np.random.default_rng(27).standard_normal((5, 2))
    ax = plots.arrangement_2d(X)
    D, _, _ = arr.cones_2d(X)
    labels = {t.get_text() for t in ax.texts}
    assert {"".join("1" if b else "0" for b in D[:, j]) for j in range(D.shape[1])} <= labels
    assert "10 cones" in ax.get_title()
    # the shading has a key: a colour bar with one integer tick per possible count 0..n
    bars = [a for a in ax.figure.axes if a is not ax]
    assert len(bars) == 1 and "count" in bars[0].get_ylabel()
    assert [int(round(t)) for t in bars[0].get_yticks()] == list(range(6))
    # each "line i" label sits beyond its line's end (radius 1), not on the line
    for t in ax.texts:
        if t.get_text().startswith("line "):
            assert np.hypot(*t.get_position()) > 1.05


def test_restart_histogram_band_is_the_certified_gap():
    import matplotlib

    matplotlib.use("Agg")
    from cvxattn_lib import plots

    p_star, lb = 2.0, 2.0 - 4e-10
    gap = (p_star - lb) / p_star
    objs = p_star * (1 + np.array([-1e-10, 0.0, 1e-9, 1e-6]))
    ax = plots.restart_histogram(objs, p_star, lower_bound=lb, tol=gap)
    labels = ax.get_legend_handles_labels()[1]
    assert any(lab.startswith("certified-accuracy band |excess| <= gap") for lab in labels)
    # the red line (the certified lower bound) sits at the band's left edge
    red = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(red) == 1 and abs(red[0].get_xdata()[0] + gap) <= 1e-12 * gap
    assert "below p* inside the band: 1" in ax.texts[-1].get_text()
