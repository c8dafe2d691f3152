"""The notebook-05 explorers driven as a reader would (move a control, see what changed), and the
helpers behind them, on tiny random tokens (no backbone): a few seconds on one CPU thread."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless, whatever backend the environment sets

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import cvxattn_lib.widgets as widgets
from cvxattn_lib.cifar import explore
from cvxattn_lib.cifar.heads import train_head

BETAS = [0.1, 1.0, 10.0]
CLASSES = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def trained():
    """A sweep over BETAS of the linear head and convex linear attention on 4 x 4 tokens."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    Xtr, Xte = (rng.standard_normal((n, 16, 3)).astype(np.float32) for n in (24, 12))
    ytr, yte = rng.integers(0, CLASSES, 24), rng.integers(0, CLASSES, 12)
    rows, models = [], {}
    for head in ["linear", "attention_linear"]:
        for beta in BETAS:
            with warnings.catch_warnings():  # FISTA may stop at max_iter: fine for a widget test
                warnings.simplefilter("ignore", RuntimeWarning)
                r, m = train_head(head, Xtr, ytr, Xte, yte, beta, device="cpu", classes=CLASSES,
                                  progress=False, return_model=True, solver_options={"max_iter": 200})
            rows.append(r.as_dict())
            models[(head, beta)] = m
    results = {"rows": rows, "device": "cpu", "betas": BETAS,
               "data": {"source": "standin", "n_train": 24, "n_test": 12},
               "backbone": {"name": "random tokens", "pretrained": False}}
    images = rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)
    return results, models, images, Xte


def test_sweep_explorer_moves_over_the_grid_without_solving(trained):
    results = trained[0]
    ex = widgets.cifar_sweep_explorer(results, beta=0.1)
    assert "cvxattn-cifar-sweep-explorer" in ex._dom_classes
    assert [v for _, v in ex.slider.options] == BETAS  # the slider offers exactly the precomputed grid
    assert ex.draws == 1 and ex.last["beta"] == 0.1
    first = dict(ex.last)
    ex.slider.value = 10.0
    assert ex.draws == 2 and ex.last["beta"] == 10.0
    assert ex.last["figure_sha1"] != first["figure_sha1"]
    want = {r["head"]: r["units"] for r in results["rows"] if r["beta"] == 10.0}
    assert ex.last["units"] == want  # read from the sweep, not re-solved
    assert want["attention_linear"] <= first["units"]["attention_linear"]  # more decay, lower rank
    assert "β = 10" in ex.status.value


def test_sweep_explorer_needs_rows():
    with pytest.raises(ValueError, match="no rows"):
        widgets.cifar_sweep_explorer({"rows": []})


def test_token_explorer_picks_an_image_and_redraws(trained):
    _, models, images, Xte = trained
    group = explore.group_models(models, 0.1)
    assert set(group) == {"attention_linear"}  # the linear head has no token groups
    ex = widgets.cifar_token_explorer(images, Xte, group, K=3, index=0, progress=False)
    assert "cvxattn-cifar-token-explorer" in ex._dom_classes
    assert ex.draws == 1 and ex.last["index"] == 0
    assert ex.renders == len(ex.picker.options) == 12  # prerendered: every choice at construction
    sha = ex.last["figure_sha1"]
    ex.picker.value = 5
    assert ex.draws == 2 and ex.last["index"] == 5 and ex.last["figure_sha1"] != sha
    assert ex.renders == 12  # a pick swaps a prerendered image
    lazy = widgets.cifar_token_explorer(images, Xte, group, K=3, index=0, prerender=False)
    assert lazy.renders == 1 and lazy.last["figure_sha1"] == sha
    lazy.picker.value = 5
    assert lazy.renders == 2 and lazy.last["figure_sha1"] == ex.last["figure_sha1"]
    assert 1 <= ex.last["groups"]["attention_linear"] <= 3
    groups = explore.image_groups(group, Xte, 5, K=3)["attention_linear"]
    assert groups.shape == (16,)  # one group per token of the 4 x 4 grid
    with pytest.raises(ValueError, match="same images"):
        widgets.cifar_token_explorer(images[:3], Xte, group)
    with pytest.raises(ValueError, match="models is empty"):
        widgets.cifar_token_explorer(images, Xte, {})


def test_token_groups_follow_the_heads_patterns():
    """Tokens on two sides of a direction u: a gated-ReLU attention head with gate u u^T attends only
    within a side (pattern (x_t.u)(x_s.u) >= 0), and a gated-ReLU neuron with gate u fires on one side,
    so both split the tokens exactly by side."""
    rng = np.random.default_rng(1)
    u = np.array([1.0, 0.0, 0.0])
    side = rng.permutation(np.repeat([1.0, -1.0], 8))
    X = (side[:, None] * u + 0.05 * rng.standard_normal((16, 3)))[None]
    uu = np.outer(u, u)[None]
    attn = SimpleNamespace(weights=lambda: {"W1": uu, "W2": np.eye(3)[None], "G": uu},
                           activation="gated_relu")
    mlp = SimpleNamespace(weights=lambda: {"W1": np.ones((3, 1)), "W2": np.ones((1, 2)), "G": u[:, None]},
                          activation="gated_relu")
    for head, model in [("attention_gated_relu", attn), ("mlp_gated_relu", mlp)]:
        lab = explore.token_groups(head, model, X, K=2)[0]
        assert np.array_equal(lab == lab[0], side == side[0]), head  # the groups are the two sides
    zero = SimpleNamespace(weights=lambda: {"W1": np.zeros((0, 3, 3)), "W2": np.zeros((0, 3, 2))},
                           activation="linear")
    assert not explore.token_groups("attention_linear", zero, X).any()  # a zero head: one group
    with pytest.raises(ValueError, match="token groups are defined"):
        explore.token_groups("mixer", attn, X)


def test_small_features_pool_the_pca_grid(tmp_path):
    """Training tokens are the pooled full-grid PCA features (one basis for both)."""
    rng = np.random.default_rng(2)
    caches = {split: SimpleNamespace(features=rng.standard_normal((n, 16, 6)).astype(np.float16),
                                     labels=rng.integers(0, 5, n))
              for split, n in [("train", 20), ("test", 8)]}
    f = explore.small_features({"caches": caches}, dim=3, tokens=4)
    assert f["train"].shape == (20, 4, 3) and f["test_grid"].shape == (8, 16, 3)
    grid = f["test_grid"].reshape(8, 4, 4, 3)
    pooled = grid.reshape(8, 2, 2, 2, 2, 3).mean(axis=(2, 4)).reshape(8, 4, 3)
    np.testing.assert_allclose(f["test"], pooled, rtol=1e-5, atol=1e-5)
    assert f["info"]["grid_tokens"] == 16 and f["info"]["tokens"] == 4
    assert explore.grid_side(196) == 14 and explore.grid_side(10) is None


def test_at_beta_takes_the_nearest_grid_value_in_log_scale(trained):
    results = trained[0]
    assert explore.at_beta(results, 0.25)["betas"] == [0.1]
    assert explore.at_beta(results, 0.4)["betas"] == [1.0]
    best = explore.best_rows(results)["rows"]
    assert len(best) == 2
    for r in best:
        assert r["top1"] == max(q["top1"] for q in results["rows"] if q["head"] == r["head"])
