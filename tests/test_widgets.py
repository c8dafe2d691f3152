"""The beta explorer, driven as a reader would: move the slider, see what changed.

On the 16-point spiral the exact ReLU program (every activation pattern enumerated) solves in a
fraction of a second, so building the widget and three moves take about two seconds.
"""

import matplotlib

matplotlib.use("Agg")  # headless, whatever backend the environment sets

import numpy as np
import pytest

import cvxattn_lib as cal
import cvxattn_lib.toydata
import cvxattn_lib.widgets

BETA0, BETA1 = 0.1, 1.0  # the default and a ten times larger weight decay


@pytest.fixture(scope="module")
def data():
    return cal.toydata.two_class_2d(n=16, seed=0)


@pytest.fixture
def explorer(data):
    X, y = data
    return cal.widgets.mlp_beta_explorer(X, y)


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


def test_moving_the_slider_resolves_and_going_back_uses_the_cache(explorer):
    first = dict(explorer.last)
    info0 = explorer.solve.cache_info()

    # more weight decay: a larger optimum with no more neurons, and a new figure
    explorer.slider.value = BETA1
    assert explorer.draws == 2
    moved = dict(explorer.last)
    assert moved["beta"] == pytest.approx(BETA1) and moved["beta"] != first["beta"]
    assert moved["value"] > first["value"]
    assert moved["n_neurons"] <= first["n_neurons"]
    assert moved["figure_sha1"] != first["figure_sha1"]
    assert abs(moved["rel_gap"]) < 1e-6
    info1 = explorer.solve.cache_info()
    assert info1.misses == info0.misses + 1

    # back to the first value: served from the cache, same optimum and the same picture
    explorer.slider.value = BETA0
    assert explorer.draws == 3
    info2 = explorer.solve.cache_info()
    assert info2.hits == info1.hits + 1 and info2.misses == info1.misses
    back = explorer.last
    assert back["value"] == first["value"]
    assert back["n_neurons"] == first["n_neurons"]
    assert back["figure_sha1"] == first["figure_sha1"]


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
