"""The beta explorer, driven as a reader would: move the slider, see what changed.

On the 16-point spiral the exact ReLU program (every activation pattern enumerated) solves in a
fraction of a second; the widget solves it at each of its 41 slider positions when it is built
(a few seconds, then loaded from the on-disk cache), and a move only draws.
"""

import matplotlib

matplotlib.use("Agg")  # headless, whatever backend the environment sets

import numpy as np
import pytest

import cvxattn_lib as cal
import cvxattn_lib.toydata
import cvxattn_lib.widgets

BETA0, BETA1 = 0.1, 1.0  # the default and a ten times larger weight decay


@pytest.fixture(scope="module", autouse=True)
def data_root(tmp_path_factory):
    """Paths cached under a temporary data root, not the repository's data/cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVXATTN_DATA", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="module")
def data():
    return cal.toydata.two_class_2d(n=16, seed=0)


@pytest.fixture
def explorer(data):
    X, y = data
    return cal.widgets.mlp_beta_explorer(X, y, progress=False, prerender=False)


def test_explorer_is_drawn_at_the_default_beta(explorer):
    assert explorer.slider.value == pytest.approx(BETA0)
    assert explorer.draws == 1
    last = explorer.last
    assert set(last) >= {"beta", "value", "n_neurons", "rel_gap", "figure_sha1"}
    assert last["beta"] == pytest.approx(BETA0)
    assert np.isfinite(last["value"]) and last["value"] > 0
    assert last["n_neurons"] >= 1
    assert abs(last["rel_gap"]) < 1e-6  # the certificate closes at the drawn solution
    assert len(last["figure_sha1"]) == 40
    assert "active neurons" in explorer.status.value


def test_slider_settings(explorer):
    assert explorer.slider.continuous_update is False  # solves only on release
    assert "cvxattn-beta-explorer" in explorer._dom_classes
    assert explorer.slider.base == 10
    assert explorer.slider.min < np.log10(BETA0) < np.log10(BETA1) <= explorer.slider.max


def test_moving_the_slider_only_draws_and_going_back_reuses_the_image(explorer):
    first = dict(explorer.last)
    assert explorer.renders == 1

    # more weight decay: a larger optimum with no more neurons, and a new figure, from the path
    explorer.slider.value = BETA1
    assert explorer.draws == 2 and explorer.renders == 2
    moved = dict(explorer.last)
    assert moved["beta"] == pytest.approx(BETA1) and moved["beta"] != first["beta"]
    assert moved["value"] > first["value"]
    assert moved["n_neurons"] <= first["n_neurons"]
    assert moved["figure_sha1"] != first["figure_sha1"]
    assert abs(moved["rel_gap"]) < 1e-6
    assert explorer.solve(BETA1) is explorer.path.fit(BETA1)  # drawn from the path ...
    assert explorer.off_grid_solves == 0  # ... with no solve on the move

    # back to the first value: the same optimum and the same PNG, not rendered again
    explorer.slider.value = BETA0
    assert explorer.draws == 3 and explorer.renders == 2
    back = explorer.last
    assert back["value"] == first["value"]
    assert back["n_neurons"] == first["n_neurons"]
    assert back["figure_sha1"] == first["figure_sha1"]


def test_the_path_covers_every_slider_position_and_is_cached(explorer, data):
    s = explorer.slider
    grid = explorer.path.betas
    assert len(grid) == round((s.max - s.min) / s.step) + 1 == 41
    np.testing.assert_allclose(np.log10(grid), s.min + s.step * np.arange(len(grid)), atol=1e-12)
    assert np.all(explorer.path.rel_gaps < 1e-6)
    X, y = data
    again = cal.widgets.mlp_beta_explorer(X, y, progress=False, prerender=False)
    assert again.path.cached and again.path.cache_file == explorer.path.cache_file
    np.testing.assert_array_equal(again.path.values, explorer.path.values)


def test_numbers_at_the_default_beta_are_the_cvxpy_optimum(explorer, data):
    """The drawn optimum is the CVXPY program's at the same beta (the figure is unchanged)."""
    X, y = data
    fit = cal.convex.fit_mlp(X, y, BETA0, "relu")
    assert explorer.last["value"] == pytest.approx(fit.value, rel=1e-6)
    assert explorer.last["n_neurons"] == fit.n_neurons


def test_zero_network_above_beta_max_is_drawn(explorer):
    """At the top of the slider (above beta_max on this toy) the optimum is the zero network: the
    figure says so instead of failing."""
    top = float(explorer.grid[-1])
    assert top > explorer.path.beta_max
    explorer.slider.value = top
    assert explorer.last["n_neurons"] == 0
    assert explorer.last["value"] == pytest.approx(0.5 * np.sum(explorer.y ** 2), rel=1e-6)


def test_off_grid_beta_is_solved(explorer):
    fit = explorer.solve(0.3)  # between slider positions: a CVXPY solve, cached
    assert explorer.off_grid_solves == 1 and explorer.solve(0.3) is fit
    assert explorer.off_grid_solves == 1 and abs(fit.certificate()["rel_gap"]) < 1e-6


def test_cached_fit_is_not_changed_by_later_solves(explorer):
    """The cache hands back fits whose arrays later solves of the same program do not overwrite."""
    fit0 = explorer.solve(BETA0)
    Z0 = [np.array(z, copy=True) for z in fit0.Z]
    explorer.solve(BETA1)
    for before, after in zip(Z0, fit0.Z):
        np.testing.assert_array_equal(before, after)
    fresh = explorer.program.fit(BETA0)
    assert fresh.value == pytest.approx(fit0.value, rel=1e-9)


def test_setting_the_same_value_does_not_redraw(explorer):
    explorer.slider.value = explorer.slider.value
    assert explorer.draws == 1


def test_static_figure_matches_the_widget(explorer):
    """``figure(beta)`` is what a rendered page shows beside the widget."""
    import matplotlib.pyplot as plt

    fig, info = explorer.figure(BETA0)
    try:
        assert info["value"] == explorer.last["value"]
        assert f"{info['n_neurons']} neurons" in fig.axes[0].get_title()
    finally:
        plt.close(fig)
