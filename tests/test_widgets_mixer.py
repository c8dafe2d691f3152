"""The Mixer/FNO β explorer of notebook 04, driven as a reader would: move the slider, see what
changed.  Data: a rank-one circular convolution over 6 tokens (a kernel whose spectrum vanishes at
the Nyquist mode, a rank-one channel map) plus noise; the three programs solve in about a second."""

import matplotlib

matplotlib.use("Agg")  # headless, whatever backend the environment sets

import numpy as np
import pytest

import cvxattn_lib as cal
import cvxattn_lib.widgets
from cvxattn_lib.convex.fno import circulant
from cvxattn_lib.widgets.mixer import numerical_rank

BETA0, BETA1 = 0.1, 10.0  # the default and a hundred times larger weight decay


@pytest.fixture(scope="module", autouse=True)
def data_root(tmp_path_factory):
    """Paths cached under a temporary data root, not the repository's data/cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVXATTN_DATA", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, s, d, c = 10, 6, 2, 2
    X = rng.standard_normal((n, s, d))
    B = np.outer([1.0, -0.5], [0.8, 0.6])
    Y = np.einsum("tu,nua,ab->ntb", circulant(np.array([0.5, 0.25, 0, 0, 0, 0.25])), X, B)
    return X, Y + 0.05 * rng.standard_normal((n, s, c))


@pytest.fixture
def explorer(data):
    return cal.widgets.mixer_beta_explorer(*data, beta=BETA0, progress=False, prerender=False)


def test_explorer_is_drawn_at_the_default_beta(explorer, data):
    X, Y = data
    assert explorer.slider.value == pytest.approx(BETA0)
    assert explorer.draws == 1
    last = explorer.last
    keys = {"mixer_value", "circulant_value", "spectral_value", "mixer_rank", "circulant_rank",
            "spectral_modes", "spectral_rank"}
    assert set(last) >= keys | {"beta", "figure_sha1"}
    fits = explorer.solve(round(BETA0, 12))
    assert last["mixer_value"] == fits["mixer"].value
    assert last["spectral_value"] == fits["spectral"].value
    for key in ("mixer", "circulant", "spectral"):  # the drawn solutions are certified optima
        gap = fits[key].certificate()["rel_gap"]
        assert last["rel_gaps"][key] == gap and abs(gap) <= last["rel_gap"] < 1e-6
    top = max(1.0, *(float(np.max(v)) for v in [fits["mixer"].singular_values()[0],
                                                  fits["circulant"].singular_values()[0]]),
              *(float(np.linalg.norm(R, 2)) for R in fits["spectral"].Z))
    assert last["rank_threshold"] == pytest.approx(explorer.rank_rtol * top, rel=1e-12)
    assert isinstance(last["retried"], tuple) and set(last["retried"]) <= {"mixer", "circulant", "spectral"}
    # the drawn ranks are those of the lifted matrices
    assert last["mixer_rank"] == numerical_rank(fits["mixer"].singular_values()[0])
    assert last["circulant_rank"] == numerical_rank(fits["circulant"].singular_values()[0])
    assert 1 <= last["spectral_modes"] <= X.shape[1] // 2 + 1
    assert 1 <= last["spectral_rank"] <= min(X.shape[2], Y.shape[2])
    assert len(last["figure_sha1"]) == 40
    assert "heads" in explorer.status.value and "modes on" in explorer.status.value


def test_slider_settings(explorer):
    assert explorer.slider.continuous_update is False  # solves only on release
    assert "cvxattn-mixer-explorer" in explorer._dom_classes
    assert explorer.slider.base == 10
    assert explorer.slider.min < np.log10(BETA0) < np.log10(BETA1) <= explorer.slider.max


def test_moving_the_slider_resolves_and_going_back_uses_the_cache(explorer):
    first = dict(explorer.last)

    # more weight decay: larger optima, lower ranks, fewer modes, and a new figure
    explorer.slider.value = BETA1
    assert explorer.draws == 2
    moved = dict(explorer.last)
    assert moved["beta"] == pytest.approx(BETA1)
    for key in ("mixer", "circulant", "spectral"):
        assert moved[f"{key}_value"] > first[f"{key}_value"]
    assert moved["mixer_rank"] < first["mixer_rank"]
    assert moved["circulant_rank"] < first["circulant_rank"]
    assert moved["spectral_modes"] < first["spectral_modes"]
    assert moved["figure_sha1"] != first["figure_sha1"]
    assert moved["rel_gap"] < 1e-6
    assert explorer.off_grid_solves == 0  # drawn from the three paths, nothing solved

    # back to the first value: same optima and the same picture, not rendered again
    renders = explorer.renders
    explorer.slider.value = BETA0
    assert explorer.draws == 3 and explorer.renders == renders
    back = explorer.last
    assert {k: back[k] for k in first} == first


def test_numbers_at_the_default_beta_are_the_cvxpy_optima(explorer, data):
    X, Y = data
    ref = {"mixer": cal.convex.fit_mixer(X, Y, BETA0),
           "circulant": cal.convex.fit_fno(X, Y, BETA0, "circulant"),
           "spectral": cal.convex.fit_fno(X, Y, BETA0, "spectral")}
    for key, fit in ref.items():
        assert explorer.last[f"{key}_value"] == pytest.approx(fit.value, rel=1e-6)
    assert explorer.last["mixer_rank"] == numerical_rank(ref["mixer"].singular_values()[0])
    assert explorer.last["circulant_rank"] == numerical_rank(ref["circulant"].singular_values()[0])


def test_static_figure_matches_the_widget(explorer):
    """``figure(beta)`` (the static copy a rendered page shows) reports what the widget drew."""
    fig, info = explorer.figure(BETA0)
    assert len(fig.axes) == 3
    assert all(ax.get_title() and ax.get_xlabel() for ax in fig.axes)
    assert fig.axes[0].get_ylabel()
    for key, value in info.items():
        assert explorer.last[key] == value


def test_spectra_shapes(explorer, data):
    X, Y = data
    n, s, d = X.shape
    c = Y.shape[2]
    sp = explorer.spectra(BETA0)
    assert sp["mixer"].shape == (min(s * s, d * c),)
    assert sp["circulant"].shape == (min(s, d * c),)
    assert len(sp["spectral"]) == s // 2 + 1 and all(v.shape == (min(d, c),) for v in sp["spectral"])
    assert np.all(np.diff(sp["mixer"]) <= 0) and np.all(sp["mixer"] >= 0)


def test_numerical_rank():
    assert numerical_rank(np.array([3.0, 1e-3, 1e-9])) == 2
    assert numerical_rank(np.array([1e-7, 1e-9])) == 0  # relative to max(1, largest)
    assert numerical_rank(np.array([])) == 0


def test_bad_inputs_name_the_argument(data):
    X, Y = data
    with pytest.raises(ValueError, match="Y"):
        cal.widgets.mixer_beta_explorer(X, Y[:3])
    with pytest.raises(ValueError, match="X"):
        cal.widgets.mixer_beta_explorer(X[0], Y)


def test_panels_and_status_use_the_true_model_names(explorer):
    """Bilinear (Mixer-style) mixing, the circular convolution and the two-layer per-mode map are
    named for what they are, not as 'Mixer' and 'FNO' (the FNO layer of Li et al. is a ridge
    problem, see cvxattn_lib.convex.fno.fno_layer_ridge)."""
    from cvxattn_lib.widgets.mixer import NAMES

    fig, _ = explorer.figure(BETA0)
    titles = [ax.get_title() for ax in fig.axes]
    for title, key in zip(titles, ("mixer", "circulant", "spectral")):
        assert title.startswith(NAMES[key])
    assert all(NAMES[key] in explorer.status.value for key in NAMES)
    assert not any("spectral FNO" in t or "circulant FNO" in t or t.startswith("Mixer") for t in titles)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_inaccurate_first_solves_are_recorded_not_printed(data, monkeypatch):
    # a program whose first (tight) solve warns "Solution may be inaccurate" is listed in
    # info['retried'] and the warning is not shown; any other warning still is
    import warnings

    import cvxattn_lib.widgets.mixer as wm

    real = wm.fit_mixer

    def noisy_fit_mixer(*args, **kwargs):
        warnings.warn("Solution may be inaccurate. Try another solver", UserWarning, stacklevel=2)
        warnings.warn("something else", RuntimeWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(wm, "fit_mixer", noisy_fit_mixer)
    explorer = cal.widgets.mixer_beta_explorer(*data, beta=BETA0, progress=False, prerender=False)
    assert explorer.last["retried"] == ()  # on the slider's grid: from the paths, no CVXPY
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        fits = explorer.solve(0.3)  # off the grid: CVXPY
    assert "mixer" in fits["retried"] and explorer.off_grid_solves == 1
    messages = [str(w.message) for w in shown]
    assert "something else" in messages
    assert not any("Solution may be inaccurate" in m for m in messages)
