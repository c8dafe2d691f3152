r"""What notebook 05 does with the pipeline: small CPU features, a beta sweep that keeps the trained
models, results from a GPU run when one exists, and token groups drawn over the patch grid.

Reduced features keep one basis for two uses: PCA to d on the backbone's tokens (fit on train), then
average pooling of the token grid to t tokens for training.  Pooling is linear and the PCA map affine,
so both orders give the same pooled features; an attention head trained on t tokens (its weights do
not depend on the number of tokens) can therefore be applied to the full grid of PCA features, and
its token groups drawn over the backbone's own patch grid (14 x 14 for ``gmlp_s16_224``).

Token groups of one image (tokens :math:`X\in\mathbb{R}^{s\times d}`):

* attention heads: the affinity :math:`\|c_{tu}\|` of :func:`cvxattn_lib.clustering.attention_affinity`
  (the contribution of key u to query t, symmetrised), split into K groups by spectral clustering;
* the gated-ReLU MLP: each token's activation pattern :math:`1\{x_t^\top g_j\ge0\}` over the gates of
  the neurons it uses, grouped by k-means on the patterns (tokens with one pattern share a linear map).
"""

from __future__ import annotations

import datetime as _dt
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch

from ..validation import positive_int

#: heads whose token groups can be drawn (the others act on the token mean or mix tokens by position)
GROUP_HEADS = ("attention_linear", "attention_gated_relu", "attention_softmax", "mlp_gated_relu")


def grid_side(tokens: int) -> int | None:
    """The side of a square token grid (14 for 196 tokens), else None."""
    g = int(round(np.sqrt(tokens)))
    return g if g * g == tokens else None


def small_features(prepared: dict, dim: int, tokens: int, device=None) -> dict:
    """PCA of the cached tokens to ``dim`` (fit on train) and pooling to ``tokens`` tokens.

    Returns ``{"train", "test"}`` (n, tokens, dim) float32 for training, ``"test_grid"`` (n, s, dim)
    on the backbone's full token grid (same basis), labels ``y_train``, ``y_test`` and ``info``."""
    from .cache import reduce_features

    dim, tokens = positive_int("dim", dim), positive_int("tokens", tokens)
    tr, te = prepared["caches"]["train"], prepared["caches"]["test"]
    Ftr, Fte, info = reduce_features(tr.features, te.features, dim=dim, method="pca", device=device)
    Str, Ste, pinfo = reduce_features(Ftr, Fte, tokens=tokens)
    info = dict(info, tokens=pinfo["tokens"], grid_tokens=int(Fte.shape[1]),
                method=info["method"] + ("+pool-tokens" if pinfo["method"] != "none" else ""))
    return {"train": Str, "test": Ste, "test_grid": Fte, "y_train": np.asarray(tr.labels),
            "y_test": np.asarray(te.labels), "info": info}


def grid_key(results: dict) -> str:
    """The row field a results dict's grid runs over: ``'beta_fraction'`` (beta / beta_max) when it
    was trained with ``beta_fractions``, else ``'beta'``."""
    return "beta_fraction" if results.get("beta_fractions") else "beta"


def sweep(prepared: dict, features: dict, heads, betas=None, device=None, progress: bool = True,
          verbose: bool = True, head_options: dict | None = None, beta_fractions=None,
          **common) -> tuple[dict, dict]:
    """Train every head at every beta on ``features`` (from :func:`small_features`).

    The grid is ``betas`` (absolute) or ``beta_fractions`` (beta / beta_max of each head, see
    :func:`~.heads.train_head`), not both.  ``head_options`` maps a head name to extra options of
    :func:`~.heads.train_head` for it only (e.g. ``{"attention_gated_relu": {"solver_options":
    {"n_gates": 2}}}``); ``common`` go to all.  Returns ``(results, models)``: the results dict in
    the format of ``train`` (so :func:`~.cli.format_table` prints it) and the trained models keyed
    ``(head, grid value)`` (the beta, or the fraction)."""
    from ..runtime import device as pick_device
    from .cli import RESULTS_FORMAT, data_info, resolve_heads
    from .heads import train_head

    heads = resolve_heads(heads)
    if (betas is None) == (beta_fractions is None):
        raise ValueError("give exactly one of betas and beta_fractions")
    fractions = None if beta_fractions is None else [float(f) for f in beta_fractions]
    betas = [] if fractions is not None else [float(b) for b in betas]
    head_options = head_options or {}
    rows, models = [], {}
    for h in heads:
        for g in fractions if fractions is not None else betas:
            beta, frac = (None, g) if fractions is not None else (g, None)
            opts = {"classes": int(prepared.get("classes", 100)), **common, **head_options.get(h, {})}
            if "solver_options" in common and "solver_options" in head_options.get(h, {}):
                opts["solver_options"] = {**common["solver_options"], **head_options[h]["solver_options"]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # max_iter reached: the gap is reported
                r, model = train_head(h, features["train"], features["y_train"], features["test"],
                                      features["y_test"], beta, device=device, progress=progress,
                                      return_model=True, beta_fraction=frac, **opts)
            rows.append(r.as_dict())
            models[(h, g)] = model
            if verbose:
                gap = "" if r.rel_gap is None else f" rel.gap={r.rel_gap:.1e}"
                units = "" if r.units is None else f" units={r.units}"
                at = f"beta={r.beta:<7.3g}" + ("" if frac is None else f" (beta/beta_max={frac:g})")
                print(f"  {h:22s} {at} top1={r.top1:.3f} top5={r.top5:.3f} "
                      f"time={r.train_time_s:.2f}s{units}{gap}", flush=True)
    tr, bb = prepared["caches"]["train"], prepared["backbone"]
    info = features["info"]
    results = {"format": RESULTS_FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
               "library_version": tr.meta["version"], "command": " ".join(sys.argv[:1]) + " (notebook 05)",
               "data": {**data_info(prepared), "n_train": len(features["y_train"]),
                        "n_test": len(features["y_test"]), "data_root": str(prepared["root"]),
                        "train_cache": tr.key, "test_cache": prepared["caches"]["test"].key},
               "backbone": {"name": bb.name, "pretrained": bool(bb.pretrained), "transform": bb.transform,
                            "tokens": int(tr.features.shape[1]), "features": int(tr.features.shape[2])},
               "reduction": info, "device": rows[0]["device"] if rows else str(pick_device(device)),
               "betas": betas, "heads": heads, "rows": rows}
    if fractions is not None:
        results["beta_fractions"] = fractions
    return results, models


def find_results(root=None) -> Path | None:
    """The newest results JSON under ``<root>/results`` (e.g. from a GPU run), or None."""
    from .cli import latest_results

    try:
        return latest_results(root)
    except ValueError:
        return None


def at_beta(results: dict, beta: float) -> dict:
    """The results restricted to the rows at ``beta`` (the grid value nearest to it, in log scale);
    for results trained with ``beta_fractions``, ``beta`` is a fraction of beta_max."""
    key = grid_key(results)
    betas = sorted({r[key] for r in results["rows"] if r.get(key) is not None})
    if not betas:
        raise ValueError("results has no rows")
    b = min(betas, key=lambda v: abs(np.log(v) - np.log(float(beta))))
    return dict(results, rows=[r for r in results["rows"] if r.get(key) == b],
                **({"beta_fractions": [b]} if key == "beta_fraction" else {"betas": [b]}))


def best_rows(results: dict) -> dict:
    """Per head, the row of the beta with the best test top-1 (ties: the smaller beta)."""
    best = {}
    for r in results["rows"]:
        if r.get("status", "ok") != "ok":  # a failed row has no accuracy
            continue
        cur = best.get(r["head"])
        if cur is None or r["top1"] > cur["top1"]:
            best[r["head"]] = r
    return dict(results, rows=list(best.values()))


def _label(results: dict) -> str:
    d, b = results["data"], results["backbone"]
    from .cli import data_label

    src = data_label(d)
    return (f"{src}, {d['n_train']} train / {d['n_test']} test; {b['name']}"
            f"{'' if b['pretrained'] else ' (random weights)'}; {results['device']}")


def plot_sweep(results: dict, beta: float | None = None, axes=None):
    """Test top-1 (left) and recovered units -- the rank: neurons / heads / kernels -- (right) against
    beta for every head; a dotted line marks ``beta``; one legend, outside the axes (no legend over
    data).  Returns the figure."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(13.5, 4.2), layout="constrained")
    else:
        fig = axes[0].figure
    trained = [r for r in results["rows"] if r.get("status", "ok") == "ok"]  # failed rows: no numbers
    heads = list(dict.fromkeys(r["head"] for r in trained))
    cmap = plt.get_cmap("tab10")
    key = grid_key(results)
    for i, h in enumerate(heads):
        rows = sorted((r for r in trained if r["head"] == h), key=lambda r: r[key])
        b = [r[key] for r in rows]
        style = "o-" if rows[0]["convex"] else "s--"
        axes[0].semilogx(b, [100 * r["top1"] for r in rows], style, color=cmap(i % 10), label=h)
        if rows[0].get("units") is not None:
            axes[1].semilogx(b, [r["units"] for r in rows], style, color=cmap(i % 10), label=h)
    xlabel = "β / β_max (each head's own, or its family's)" if key == "beta_fraction" else "β (weight decay)"
    axes[0].set(title="test accuracy against β", xlabel=xlabel, ylabel="top-1 test accuracy (%)")
    axes[1].set(title="units of the last iterate against β", xlabel=xlabel,
                ylabel="recovered units (neurons / heads / kernels)")
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))  # units are counts
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right center")
    if beta is not None:
        for ax in axes:
            ax.axvline(beta, color="k", ls=":", lw=1)
    fig.suptitle(_label(results), fontsize=9)
    return fig


def token_groups(head: str, model, X, K: int = 4, seed: int = 0) -> np.ndarray:
    """Groups (n, s) of the tokens X (n, s, d) of each image under a trained head (see the module
    docstring); all zeros when the head is zero (beta above its largest dual norm)."""
    from ..clustering import attention_affinity, kmeans, spectral_clusters

    if head not in GROUP_HEADS:
        raise ValueError(f"token groups are defined for the heads {', '.join(GROUP_HEADS)}, not {head!r}")
    K = positive_int("K", K)
    X = np.asarray(X, dtype=np.float64)
    n, s, _ = X.shape
    if head == "attention_softmax":
        weights = {"W1": model.W1.detach().double().cpu().numpy(),
                   "W2": model.W2.detach().double().cpu().numpy()}
        activation = "softmax"
    else:
        weights = model.weights()
        activation = model.activation
        if weights["W1"].shape[0 if head != "mlp_gated_relu" else 1] == 0:
            return np.zeros((n, s), dtype=int)
    if head == "mlp_gated_relu":
        G = np.asarray(weights["G"], dtype=np.float64)  # (d, m): the gates of the neurons used
        patterns = (X @ G >= 0).astype(float)            # (n, s, m)
        return np.stack([kmeans(p, min(K, len(np.unique(p, axis=0))), seed=seed) for p in patterns])
    aff = attention_affinity(weights, activation, X)
    return np.stack([spectral_clusters(a, K, seed=seed) for a in aff])


def plot_token_groups(image: np.ndarray, groups: dict, title: str = "", axes=None, underlay: bool = True):
    """The image (uint8 (3, H, W)) and, per head, its token groups (s,) drawn over the patch grid
    (side sqrt(s)) on top of the image in grey (``underlay=False``: the groups alone, opaque; for
    grids with one token per pixel).  Returns the figure."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 (3, H, W), got shape {image.shape}")
    n = 1 + len(groups)
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.2), layout="constrained")
    else:
        fig = axes[0].figure
    rgb = image.transpose(1, 2, 0)
    axes[0].imshow(rgb, interpolation="nearest")
    axes[0].set(title="image", xlabel="x (pixels)", ylabel="y (pixels)")
    H, W = rgb.shape[:2]
    gray = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
    for ax, (name, lab) in zip(axes[1:], groups.items()):
        lab = np.asarray(lab)
        g = grid_side(lab.size)
        if g is None:
            raise ValueError(f"{name}: {lab.size} tokens do not form a square grid")
        if underlay:
            ax.imshow(gray, cmap="gray", interpolation="nearest", extent=(0, W, H, 0))  # groups on grey
        ax.imshow(lab.reshape(g, g), cmap="tab10", vmin=0, vmax=9, alpha=0.6 if underlay else 1.0,
                  interpolation="nearest", extent=(0, W, H, 0))
        ax.set(title=f"{name}\n{len(np.unique(lab))} groups, {g}x{g} grid", xlabel="x (pixels)")
        ax.title.set_fontsize(9)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def group_models(models: dict, beta: float) -> dict:
    """The models of the heads in :data:`GROUP_HEADS` at the grid value nearest to ``beta`` (a
    fraction of beta_max for a sweep over ``beta_fractions``)."""
    betas = sorted({b for _, b in models})
    b = min(betas, key=lambda v: abs(np.log(v) - np.log(float(beta))))
    return {h: m for (h, bb), m in models.items() if bb == b and h in GROUP_HEADS}


def image_groups(models: dict, X_grid: np.ndarray, index: int, K: int = 4, seed: int = 0) -> dict:
    """Token groups of image ``index`` of ``X_grid`` (n, s, d) for every head in ``models``."""
    x = np.asarray(X_grid[index:index + 1], dtype=np.float64)
    with torch.no_grad():
        return {h: token_groups(h, m, x, K=K, seed=seed)[0] for h, m in models.items()}
