r"""Comparing heads honestly: one regularisation level for all (β as a fraction of a head's β_max),
several seeds with their spread, and matched parameter budgets.

**β as a fraction of β_max** (the glmnet :math:`\lambda/\lambda_{\max}` convention).  A convex head
with a nuclear-norm penalty has a smallest β at which :math:`Z=0` is optimal,
:math:`\beta_{\max}=\max_j\|\mathcal A_j^*(\nabla L(0))\|_2` (:func:`cvxattn_lib.solvers.beta_max`,
exact, float64, with the gates the fit will use).  These differ by orders of magnitude between
heads, so one absolute β would leave some heads at zero and others barely regularised; a fraction
``f`` of each head's own β_max means the same for all.  :func:`reference_beta` gives each head of
:data:`cvxattn_lib.cifar.heads.HEADS` its reference:

* the convex lifted heads (``mlp_gated_relu``, ``attention_*``, ``mixer*``, ``fno*``): their β_max;
* ``linear`` and ``linear_flat`` (ridge, :math:`\tfrac\beta2\|W\|_F^2`): a squared penalty is never
  exactly zero, so they have no β_max; their reference is the β_max of the same linear model with
  the nuclear norm :math:`\beta\|W\|_*` instead, :math:`\|\Phi^\top(P_0-E)\|_2` (Φ the token mean or the
  flattened tokens, :math:`P_0` the uniform probabilities of W = 0, E the one-hot labels);
* the non-convex heads borrow a reference: ``mlp_relu`` that of ``mlp_gated_relu`` (the same weight
  decay :math:`\tfrac\beta2(\|W_1\|^2+\|W_2\|^2)` on the same kind of network, gates fixed instead
  of ReLU patterns), ``attention_softmax`` that of ``linear``: at :math:`W_1=0` its attention weights
  are uniform and its mean-pooled logits are exactly :math:`\bar x\sum_jW_{2j}`, the linear head on
  the token mean with a ridge-type penalty on :math:`W_2` (linear attention's β_max would not do: its
  logits are cubic in the tokens, softmax attention's linear in the values).

**Seeds.**  :func:`compare_heads` repeats every head for each seed: the seed draws the training
subset (``n_train`` of the training images, without replacement), the gates of the gated heads and
the initial weights of the non-convex ones.  :func:`spread` summarises a column as mean, standard
deviation (ddof 1), min and max.

**Matched budgets.**  With ``match_budgets`` the non-convex heads get the size of their convex
counterpart at the same seed: ``mlp_relu`` as many hidden units as ``mlp_gated_relu`` recovered
neurons, ``attention_softmax`` as many heads as ``attention_linear`` recovered heads (each has
:math:`d^2+dc` parameters in both), so their parameter counts are equal (at least one unit).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..validation import positive_int, positive_scalar

#: non-convex head -> (its size option, the convex head whose recovered units it matches)
BUDGET = {"mlp_relu": ("width", "mlp_gated_relu"), "attention_softmax": ("attn_heads", "attention_linear")}


def linear_reference(Phi: np.ndarray, y: np.ndarray, classes: int) -> float:
    r""":math:`\|\Phi^\top(P_0-E)\|_2` for features Φ (n, p), labels y and uniform :math:`P_0=1/c`:
    the smallest β at which W = 0 minimises :math:`\sum_i\mathrm{CE}(\phi_i^\top W,y_i)+\beta\|W\|_*`."""
    Phi = np.asarray(Phi, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    G = np.full((y.size, int(classes)), 1.0 / classes)
    G[np.arange(y.size), y] -= 1.0
    return float(np.linalg.norm(Phi.T @ G, 2))


def reference_beta(head: str, X, y, classes: int, seed: int = 0, solver_options: dict | None = None) -> \
        tuple[float, str]:
    """``(reference beta, what it is)`` of ``head`` on tokens X (n, s, d) and labels y (module
    docstring): the value of :func:`cvxattn_lib.cifar.heads.reference_beta_max` (the one that
    ``train_head(beta_fraction=)`` uses); ``what`` is ``'its β_max'``, ``'ridge: nuclear-norm ref.'`` or
    ``'that of <head>'``."""
    from .heads import HEADS, reference_beta_max

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
    opts = {k: v for k, v in (solver_options or {}).items() if k == "n_gates"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value, of = reference_beta_max(head, np.asarray(X, dtype=np.float64), np.asarray(y), classes, seed,
                                       solver_options=opts)
    if head in ("linear", "linear_flat"):
        return value, "ridge: nuclear-norm ref."
    return value, ("its β_max" if of == head else f"that of {of}")


def spread(values) -> dict:
    """``{"mean", "sd", "min", "max", "n"}`` of a sequence (sd with ddof 1; 0 for one value)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("values is empty")
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def seed_subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` of ``n_total`` items drawn without replacement by ``seed``."""
    n_total, n = positive_int("n_total", n_total), positive_int("n", n)
    if n > n_total:
        raise ValueError(f"n = {n} is more than the {n_total} items there are")
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def compare_heads(features: dict, heads, fraction: float, seeds, n_train: int, classes: int,
                  match_budgets: bool = True, head_options: dict | None = None, verbose: bool = True,
                  **common) -> tuple[list[dict], dict]:
    """Train every head at β = ``fraction`` × its reference (:func:`reference_beta`) for every seed on
    a seeded subset of ``n_train`` training images of ``features`` (from
    :func:`cvxattn_lib.cifar.explore.small_features`), scored on all its test images.

    Convex heads are trained before the non-convex ones of the same seed so that, with
    ``match_budgets``, ``mlp_relu`` and ``attention_softmax`` get their counterpart's recovered size
    (:data:`BUDGET`).  ``head_options`` as in :func:`~cvxattn_lib.cifar.explore.sweep`; ``common`` go
    to :func:`~cvxattn_lib.cifar.heads.train_head` (``seed`` is set per run).  Returns ``(rows,
    models)``: one dict per (head, seed) (the :class:`~.heads.HeadResult` fields plus ``seed``,
    ``beta_ref``, ``beta_ref_kind``, ``fraction``) and the trained models keyed ``(head, seed)``."""
    from .heads import HEADS, train_head

    fraction = positive_scalar("fraction", fraction)
    heads = list(heads)
    order = sorted(heads, key=lambda h: not HEADS[h].convex)  # convex first: the budgets need them
    head_options = head_options or {}
    Xtr, ytr = features["train"], np.asarray(features["y_train"])
    rows, models = [], {}
    for seed in seeds:
        idx = seed_subset(len(ytr), n_train, seed)
        X, y = Xtr[idx], ytr[idx]
        units = {}
        for h in order:
            opts = {**common, **head_options.get(h, {})}
            if "solver_options" in common and "solver_options" in head_options.get(h, {}):
                opts["solver_options"] = {**common["solver_options"], **head_options[h]["solver_options"]}
            if match_budgets and h in BUDGET and BUDGET[h][1] in units:
                opts[BUDGET[h][0]] = max(1, units[BUDGET[h][1]])
            ref, what = reference_beta(h, X, y, classes, seed, opts.get("solver_options"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # max_iter reached: the gap is reported
                r, model = train_head(h, X, y, features["test"], features["y_test"], fraction * ref,
                                      seed=seed, classes=classes, return_model=True, progress=False, **opts)
            row = dict(r.as_dict(), seed=int(seed), beta_ref=ref, beta_ref_kind=what, fraction=fraction)
            if r.units is not None:
                units[h] = r.units
            rows.append(row)
            models[(h, seed)] = model
            if verbose:
                gap = "" if r.rel_gap is None else f" gap={r.rel_gap:.1e}"
                print(f"  seed {seed} {h:20s} beta={r.beta:.3g} ({fraction:g} x {ref:.3g}) top1={r.top1:.3f} "
                      f"params={r.params} time={r.train_time_s:.1f}s{gap}", flush=True)
    rows.sort(key=lambda r: (heads.index(r["head"]), r["seed"]))
    return rows, models


def _fmt(s: dict, scale: float = 100.0, spec: str = ".1f") -> str:
    return (f"{format(scale * s['mean'], spec)} ± {format(scale * s['sd'], spec)} "
            f"[{format(scale * s['min'], spec)}, {format(scale * s['max'], spec)}]")


def summary(rows: list[dict], tol: float = 1e-3) -> list[dict]:
    """Per head (in the order of ``rows``): the spread of top-1, top-5, params, units, β, the
    reference, the largest certified relative gap over the seeds and how many seeds reached ``tol``."""
    out = []
    for h in dict.fromkeys(r["head"] for r in rows):
        rs = [r for r in rows if r["head"] == h]
        gaps = [r["rel_gap"] for r in rs if r.get("rel_gap") is not None]
        out.append({"head": h, "convex": rs[0]["convex"], "seeds": [r["seed"] for r in rs],
                    "top1": spread(r["top1"] for r in rs), "top5": spread(r["top5"] for r in rs),
                    "params": spread(r["params"] for r in rs), "beta": spread(r["beta"] for r in rs),
                    "beta_ref": spread(r["beta_ref"] for r in rs), "beta_ref_kind": rs[0]["beta_ref_kind"],
                    "fraction": rs[0]["fraction"],
                    "units": spread(r["units"] for r in rs) if rs[0].get("units") is not None else None,
                    "max_gap": max(gaps) if gaps else None,
                    "converged": sum(g <= tol for g in gaps) if gaps else None})
    return out


def format_summary(rows: list[dict], tol: float = 1e-3) -> str:
    """The head table over seeds: top-1 as mean ± sd [min, max] (%), parameters (mean [min, max]),
    β/reference and β (mean over seeds), the reference's kind, and the certified gap, in words where a
    fit did not reach ``tol``."""
    lines = [f"{'head':20s} {'top-1 % mean ± sd [min, max]':30s} {'params [min, max]':>20s} "
             f"{'β/β_max':>7s} {'β (mean)':>9s}  {'β_max is':24s} certified gap"]
    lines.append("-" * len(lines[0]))
    for s in summary(rows, tol):
        p = s["params"]
        params = f"{p['mean']:.0f} [{p['min']:.0f}, {p['max']:.0f}]"
        n = len(s["seeds"])
        if s["max_gap"] is None:
            gap = "none (non-convex)"
        elif s["converged"] == n:
            gap = f"<= {tol:g} (max {s['max_gap']:.1e})"
        else:
            gap = f"{tol:g} NOT reached in {n - s['converged']} of {n} seeds (max {s['max_gap']:.1e})"
        lines.append(f"{s['head']:20s} {_fmt(s['top1']):30s} {params:>20s} {s['fraction']:7.3g} "
                     f"{s['beta']['mean']:9.3g}  {s['beta_ref_kind']:24s} {gap}")
    return "\n".join(lines)


# --- token groups against simple references --------------------------------------------------------

def brightness_groups(images, side: int) -> np.ndarray:
    """Two reference groups per image (n, side²): grid cells brighter than the image's mean grey level
    (1) or not (0), the grey image averaged over each cell of a side x side grid (for the 8 x 8
    digits on an 8 x 8 grid: ink and background).  Row-major, as the token grids."""
    import torch

    side = positive_int("side", side)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (n, 3, H, W), got shape {images.shape}")
    grey = torch.as_tensor(images, dtype=torch.float64).mean(1, keepdim=True)
    cells = torch.nn.functional.adaptive_avg_pool2d(grey, side).flatten(1).numpy()
    return (cells > cells.mean(1, keepdims=True)).astype(int)


def quadrant_groups(n: int, side: int) -> np.ndarray:
    """Four reference groups by position alone (n, side²): the quadrant of each grid cell."""
    n, side = positive_int("n", n), positive_int("side", side)
    h, w = np.divmod(np.arange(side * side), side)
    return np.tile(2 * (h >= side / 2) + (w >= side / 2), (n, 1)).astype(int)


def group_agreement(groups: dict) -> dict:
    """``{(a, b): spread of the per-image adjusted Rand index}`` for every pair of groupings in
    ``groups`` (name -> (n, s) labels of the same n images and s tokens)."""
    from ..clustering import adjusted_rand_index

    names = list(groups)
    shapes = {k: np.shape(v) for k, v in groups.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise ValueError(f"every grouping must be (n, s) labels of the same images; got {shapes}")
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out[(a, b)] = spread(adjusted_rand_index(x, y) for x, y in zip(groups[a], groups[b]))
    return out


def format_agreement(agreement: dict) -> str:
    """One line per pair: mean ± sd [min, max] of the ARI over the images."""
    width = max(len(f"{a} vs {b}") for a, b in agreement)
    return "\n".join(f"{f'{a} vs {b}':{width}s}  ARI {s['mean']:+.2f} ± {s['sd']:.2f} "
                     f"[{s['min']:+.2f}, {s['max']:+.2f}] over {s['n']} images"
                     for (a, b), s in agreement.items())


def cifar100_ready(root, backbone: str = "gmlp_s16_224") -> tuple[bool, str]:
    """``(ready, why)``: whether CIFAR-100's files are under ``root`` (md5-checked) and the pretrained
    weights of the timm ``backbone`` are in the local Hugging Face cache, so that the setting of the
    paper's experiments runs offline.  Nothing is downloaded."""
    from pathlib import Path

    from .backbone import _cached_weights, _timm
    from .data import CifarDataError, check_files

    if not (Path(root) / "cifar-100-python").is_dir():
        return False, f"CIFAR-100 is not under {root} (no cifar-100-python/ folder)"
    try:
        check_files(Path(root))
    except (CifarDataError, OSError, ValueError) as exc:
        return False, f"CIFAR-100 under {root} is incomplete or corrupt ({str(exc).split('. ')[0]})"
    cfg = _timm().create_model(backbone, pretrained=False, num_classes=0).pretrained_cfg
    if _cached_weights(cfg) is None:
        return False, f"CIFAR-100 is there, but the pretrained {backbone} weights are not in the local cache"
    return True, f"CIFAR-100 and the pretrained {backbone} weights are here"


def plot_fraction_sweep(rows: list[dict], tol: float = 1e-3, title: str = "", axes=None):
    """Test top-1 (left) and recovered units of the convex heads (right) against β/β_max, one line per
    head (rows of :func:`compare_heads` at several fractions, one seed); a red ring marks a convex fit
    whose certified gap is above ``tol`` (a last iterate, not the optimum).  One legend, outside the
    axes.  Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(13.5, 4.2), layout="constrained")
    else:
        fig = axes[0].figure
    cmap = plt.get_cmap("tab10")
    for i, h in enumerate(dict.fromkeys(r["head"] for r in rows)):
        rs = sorted((r for r in rows if r["head"] == h), key=lambda r: r["fraction"])
        f = [r["fraction"] for r in rs]
        style = "o-" if rs[0]["convex"] else "s--"
        axes[0].semilogx(f, [100 * r["top1"] for r in rs], style, color=cmap(i % 10), label=h)
        if rs[0].get("units") is not None:
            axes[1].semilogx(f, [r["units"] for r in rs], style, color=cmap(i % 10), label=h)
        far = [r for r in rs if r.get("rel_gap") is not None and r["rel_gap"] > tol]
        for ax, key in ((axes[0], "top1"), (axes[1], "units")):
            scale = 100 if key == "top1" else 1
            pts = [(r["fraction"], scale * r[key]) for r in far if r.get(key) is not None]
            if pts:
                ax.scatter(*zip(*pts), s=160, facecolors="none", edgecolors="red", linewidths=1.2, zorder=3)
    axes[0].set(title="test accuracy against β/β_max", xlabel="β / β_max (each head its own β_max)",
                ylabel="top-1 test accuracy (%)")
    axes[1].set(title=f"units of the convex heads against β/β_max\n(red ring: certified gap > {tol:g})",
                xlabel="β / β_max (each head its own β_max)",
                ylabel="recovered units (neurons / heads / kernels)")
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    fractions = sorted({r["fraction"] for r in rows})
    for ax in axes:
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.xaxis.set_minor_locator(plt.NullLocator())
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right center")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
