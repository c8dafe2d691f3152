"""The toy tasks of notebook 04 have the structure they are named for, and ``predict`` rebuilds
each convex fit's map on new samples (on the training samples it is the fit's own prediction)."""

import numpy as np
import pytest

import cvxattn_lib as cal
from cvxattn_lib import mixer_tasks as mt
from cvxattn_lib.convex.fno import circulant, fit_fno_layer


@pytest.mark.parametrize("kind", mt.TASKS)
def test_splits_and_shapes(kind):
    T = mt.token_task(kind, n_train=5, n_val=3, n_test=4, s=6, d=4, seed=1)
    assert T.Xtr.shape == (5, 6, 4) and T.Xval.shape == (3, 6, 4) and T.Xte.shape == (4, 6, 4)
    assert T.Ytr.shape == (5, 6, 1) and T.Yte.shape == (4, 6, 1)
    again = mt.token_task(kind, n_train=5, n_val=3, n_test=4, s=6, d=4, seed=1)
    np.testing.assert_array_equal(again.Yte, T.Yte)  # seeded


def test_translation_task_is_equivariant():
    """Rolling the tokens of a sample rolls its noise-free target: fit the map exactly from data
    and check it is a circulant (a fixed M with M = circ(M[:, 0]))."""
    T = mt.token_task("translation", n_train=40, n_val=1, n_test=1, s=5, d=2, noise=1e-12, seed=3)
    n, s, d = T.Xtr.shape
    # least squares for the linear map vec(X) -> vec(Y): Y[t] = sum_{u,a} W[t, u, a] X[u, a]
    W = np.linalg.lstsq(T.Xtr.reshape(n, s * d), T.Ytr[..., 0], rcond=None)[0].reshape(s, d, s)
    for a in range(d):
        M = W[:, a, :].T  # (t, u)
        np.testing.assert_allclose(M, circulant(M[:, 0]), atol=1e-8)


def test_positions_task_is_not_translation_equivariant():
    T = mt.token_task("positions", n_train=40, n_val=1, n_test=1, s=5, d=2, noise=1e-12, seed=3)
    n, s, d = T.Xtr.shape
    W = np.linalg.lstsq(T.Xtr.reshape(n, s * d), T.Ytr[..., 0], rcond=None)[0].reshape(s, d, s)
    M = W[:, 0, :].T
    assert np.abs(M - circulant(M[:, 0])).max() > 0.1


def test_cluster_targets_are_means_over_the_own_cluster():
    T = mt.token_task("clusters", n_train=6, n_val=1, n_test=1, s=6, d=4, noise=0.01, seed=2)
    X, Y = T.Xtr, T.Ytr
    np.testing.assert_array_equal(X[..., 2], 1.0)  # the constant channel
    for i in range(len(X)):
        same = X[i, :, :2] @ X[i, :, :2].T > 0.5  # same planted cluster: near-equal centres
        expected = (same @ X[i, :, 3]) / same.sum(axis=1)
        np.testing.assert_allclose(Y[i, :, 0], expected, atol=1e-12)


FITS = {"attention linear": lambda X, Y: cal.convex.fit_self_attention(X, Y, 0.1),
        "attention gated": lambda X, Y: cal.convex.fit_self_attention(X, Y, 0.1, "gated_relu",
                                                                      n_gates=2),
        "mixer linear": lambda X, Y: cal.convex.fit_mixer(X, Y, 0.1),
        "mixer gated": lambda X, Y: cal.convex.fit_mixer(X, Y, 0.1, "gated_relu", n_gates=2),
        "fno circulant": lambda X, Y: cal.convex.fit_fno(X, Y, 0.1),
        "fno spectral": lambda X, Y: cal.convex.fit_fno(X, Y, 0.1, "spectral"),
        "fno layer": lambda X, Y: fit_fno_layer(X, Y, 0.1)}


@pytest.mark.parametrize("name", FITS)
def test_predict_reproduces_the_training_prediction(name):
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((6, 4, 2)), rng.standard_normal((6, 4, 2))
    fit = FITS[name](X, Y)
    np.testing.assert_allclose(mt.predict(fit, X).reshape(-1, 2), fit.prediction(), atol=1e-12)
    # on new samples: linear in X for the linear heads, and the right shape for all
    Xn = rng.standard_normal((3, 4, 2))
    assert mt.predict(fit, Xn).shape == (3, 4, 2)
    if "gated" not in name:
        np.testing.assert_allclose(mt.predict(fit, 2 * Xn), 2 * mt.predict(fit, Xn) * (
            4 if name == "attention linear" else 1), atol=1e-10)


def test_relative_error():
    Y = np.ones((2, 3, 1))
    assert mt.relative_error(Y, Y) == 0
    assert mt.relative_error(np.zeros_like(Y), Y) == 1


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="kind"):
        mt.token_task("rotation")
    with pytest.raises(ValueError, match="n_test"):
        mt.token_task("positions", n_test=0)
    rng = np.random.default_rng(0)
    fit = cal.convex.fit_fno(rng.standard_normal((4, 4, 2)), rng.standard_normal((4, 4, 1)), 0.1)
    with pytest.raises(ValueError, match="tokens"):
        mt.predict(fit, rng.standard_normal((2, 5, 2)))
    with pytest.raises(TypeError, match="fit"):
        mt.predict(object(), rng.standard_normal((2, 4, 2)))


def test_select_and_score_keeps_the_best_validation_beta():
    """The kept beta has the smallest validation error of the grid, and its scores are those of
    the fit at that beta."""
    T = mt.token_task("translation", n_train=8, n_val=8, n_test=8, s=4, d=2, seed=1)
    grid = [1e-3, 1.0, 100.0]
    out = mt.select_and_score(lambda X, Y, b: fit_fno_layer(X, Y, b), T, grid)
    vals = {b: mt.relative_error(mt.predict(fit_fno_layer(T.Xtr, T.Ytr, b), T.Xval), T.Yval)
            for b in grid}
    assert out["beta"] == min(vals, key=vals.get) and out["val"] == vals[out["beta"]]
    best = fit_fno_layer(T.Xtr, T.Ytr, out["beta"])
    assert out["test"] == mt.relative_error(mt.predict(best, T.Xte), T.Yte)
    assert out["train"] == mt.relative_error(mt.predict(best, T.Xtr), T.Ytr)
    assert out["retried"] == 0  # the closed-form FNO layer calls no solver
    with pytest.raises(ValueError, match="betas"):
        mt.select_and_score(lambda X, Y, b: fit_fno_layer(X, Y, b), T, [])
    with pytest.raises(ValueError, match="betas"):
        mt.select_and_score(lambda X, Y, b: fit_fno_layer(X, Y, b), T, [-1.0])


def test_display_names_cover_the_mixers():
    assert set(mt.NAMES) == {"attention", "mixer", "circulant", "spectral", "fno_layer"}
    assert "Mixer" in mt.NAMES["mixer"] and "Li" in mt.NAMES["fno_layer"]


def test_quiet_solve_records_the_inaccurate_warning_and_shows_the_rest():
    import warnings

    def fit(x, warn):
        if warn:
            warnings.warn("Solution may be inaccurate. Try another solver", UserWarning, stacklevel=2)
        warnings.warn("other", RuntimeWarning, stacklevel=2)
        return 2 * x

    for warn in (True, False):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            out, retried = mt.quiet_solve(fit, 3, warn=warn)
        assert out == 6 and retried is warn
        assert [str(w.message) for w in shown] == ["other"]
