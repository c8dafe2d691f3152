"""The explorers of notebooks 02 and 03, driven as a reader would: move a control, see what changed."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import cvxattn_lib as cal
from cvxattn_lib import clustering as cl


@pytest.fixture(scope="module", autouse=True)
def data_root(tmp_path_factory):
    """Paths cached under a temporary data root, not the repository's data/cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVXATTN_DATA", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="module")
def rank_explorer():
    X, Y, _ = cl.planted_clusters(n=8, s=4, d=2, K=2, seed=0)
    return cal.widgets.attention_rank_explorer(X, Y, beta=0.1, progress=False, prerender=False)


def test_rank_explorer_tracks_the_rank_of_z(rank_explorer):
    e = rank_explorer
    assert e.draws == 1 and e.slider.continuous_update is False
    assert "cvxattn-rank-explorer" in e._dom_classes
    first = dict(e.last)
    fit = e.solve(0.1)
    top = fit.singular_values()[0][0]
    assert first["n_heads"] == fit.n_heads == np.linalg.matrix_rank(fit.Z[0], tol=1e-7 * top)
    assert abs(first["rel_gap"]) < 1e-6
    ref = cal.convex.fit_self_attention(e.X, e.Y, 0.1)  # the CVXPY optimum at the same beta
    assert first["value"] == pytest.approx(ref.value, rel=1e-6) and first["n_heads"] == ref.n_heads
    e.slider.value = 10.0  # strong weight decay: fewer heads, a larger optimum, a new figure
    assert e.draws == 2 and e.off_grid_solves == 0  # drawn from the path, nothing solved
    assert e.last["n_heads"] <= first["n_heads"] and e.last["value"] > first["value"]
    assert e.last["figure_sha1"] != first["figure_sha1"]
    renders = e.renders
    e.slider.value = 0.1  # back: the same image, not rendered again
    assert e.renders == renders
    assert e.last["figure_sha1"] == first["figure_sha1"]
    assert "heads = rank(Z*)" in e.status.value
    assert len(e.path.betas) == 41 and np.all(e.path.rel_gaps < 1e-6)


def test_prerendered_explorer_moves_swap_images():
    """With prerender (the default) every slider position's PNG exists after construction: a move
    renders nothing, and the image is the one a render on first visit gives."""
    X, Y, _ = cl.planted_clusters(n=8, s=4, d=2, K=2, seed=0)
    e = cal.widgets.attention_rank_explorer(X, Y, beta=0.1, progress=False)
    lazy = cal.widgets.attention_rank_explorer(X, Y, beta=0.1, progress=False, prerender=False)
    assert e.renders == len(e.grid) == 41 and lazy.renders == 1
    for beta in (10.0, 1e-3, 0.1):
        e.slider.value = lazy.slider.value = beta
        assert e.renders == 41 and e.last["figure_sha1"] == lazy.last["figure_sha1"]
    e.slider.value = 10 ** (-1 + 1e-12)  # a browser's value, off numpy's grid by round-off
    assert e.last["beta"] == 0.1 and e.renders == 41


def test_clustering_explorer_resolves_on_each_control():
    e = cal.widgets.clustering_explorer(n=10, s=6, K=3, n_gates=4, beta=0.1, progress=False, prerender=False)
    assert list(e.paths) == [(4, 0.1)]  # the opening setting's path, computed at construction
    assert e.draws == 1
    assert all(c.continuous_update is False for c in e.controls)
    assert "cvxattn-clustering-explorer" in e._dom_classes
    first = dict(e.last)
    assert -1 <= first["ari"] <= 1 and abs(first["rel_gap"]) < 1e-6
    X, Y, C = cl.routing_clusters(n=10, s=6, K=3, noise=0.1, seed=0)
    fit = cal.convex.fit_self_attention(X, Y, 0.1, activation="gated_relu", n_gates=4, seed=0)
    assert first["active"] == int(cl.active_gates(fit.Z).sum())
    assert first["ari"] == cl.clustering_ari(fit.weights(), "gated_relu", X, C, 3)
    assert first["value"] == pytest.approx(fit.value, rel=1e-6)  # the CVXPY optimum
    e.noise.value = 0.4  # another data set: its path is computed now, and said in the status
    assert e.draws == 2 and e.last["noise"] == pytest.approx(0.4)
    assert (4, 0.4) in e.paths and e.off_grid_solves == 0
    assert e.last["figure_sha1"] != first["figure_sha1"] and e.last["value"] != first["value"]
    e.gates.value = 2
    assert e.draws == 3 and e.last["n_gates"] == 2
    assert "ARI against the planted clusters" in e.status.value and "gates carrying heads" in e.status.value
    fig, info = e.figure(**e.values())  # the static figure is the widget's
    assert info["ari"] == e.last["ari"]
    assert len(fig.axes) >= 2 and all(ax.get_title() for ax in fig.axes[:2])
    # two keys: marker shapes in grey (planted), colours (learned) in a key of their own
    from matplotlib.colors import to_rgba
    from matplotlib.legend import Legend
    keys = [a for a in fig.axes[1].get_children() if isinstance(a, Legend)]
    assert sorted(k.get_title().get_text() for k in keys) == ["colour: learned group",
                                                               "marker shape: planted"]
    shape_key = next(k for k in keys if "shape" in k.get_title().get_text())
    assert all(h.get_markerfacecolor() == "0.7" for h in shape_key.legend_handles)
    colour_key = next(k for k in keys if "colour" in k.get_title().get_text())
    assert [to_rgba(h.get_markerfacecolor()) for h in colour_key.legend_handles] == [
        to_rgba(f"C{k}") for k in range(3)]
    # above beta_max no gate carries a head: the explorer says so instead of failing
    e.slider.value = 1000.0
    assert e.last["active"] == 0 and e.last["n_heads"] == 0 and np.isnan(e.last["ari"])


def test_planted_learned_legend_refuses_a_bad_cluster_count():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="K must be a positive integer"):
            cal.plots.planted_learned_legend(ax, bad)
    plt.close(fig)
