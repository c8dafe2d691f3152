"""Figures used by the notebooks; every axis has a title, labels and units."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def decision_boundary(predict, X: np.ndarray, y: np.ndarray, ax=None, title: str = "",
                      resolution: int = 150, margin: float = 0.3):
    """Filled contours of ``predict`` over the plane of X's first two columns, the zero level
    set as the decision boundary, and the data coloured by class.  ``predict`` receives points
    in the same feature layout as X (a ones column is appended if X has one)."""
    ax = ax or plt.subplots(figsize=(4.6, 4.2))[1]
    lo, hi = X[:, :2].min(0) - margin, X[:, :2].max(0) + margin
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    P = np.stack([g1.ravel(), g2.ravel()], axis=1)
    if X.shape[1] == 3:
        P = np.concatenate([P, np.ones((P.shape[0], 1))], axis=1)
    F = np.asarray(predict(P)).reshape(g1.shape)
    lim = max(float(np.abs(F).max()), 1e-12)
    cs = ax.contourf(g1, g2, F, levels=21, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.75)
    if F.min() < 0 < F.max():  # a constant output (the zero network) has no boundary to draw
        ax.contour(g1, g2, F, levels=[0.0], colors="k", linewidths=1.5)
    ax.scatter(X[:, 0], X[:, 1], c=np.where(y > 0, "tab:red", "tab:blue"), edgecolors="k", s=28)
    ax.set(title=title or "decision boundary (black: f(x) = 0)", xlabel="$x_1$ (a.u.)",
           ylabel="$x_2$ (a.u.)", xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    ax.figure.colorbar(cs, ax=ax, label="network output f(x)")
    return ax


def _symlog_ticks(lo: float, hi: float, tol: float, most: int = 4) -> list[float]:
    """Ticks for a symlog axis linear within +-tol: 0 and at most ``most`` decades per side, each
    beyond the linear band, so labels never crowd the band around 0."""
    ticks = [0.0]
    for sign, end in ((1.0, hi), (-1.0, -lo)):
        if end <= tol:
            continue
        first, last = int(np.floor(np.log10(tol))) + 1, int(np.floor(np.log10(end)))
        step = max(1, int(np.ceil((last - first + 1) / most)))
        ticks += [sign * 10.0 ** k for k in range(last, first - 1, -step)]
    return sorted(ticks)


def restart_histogram(objectives, optimum: float, lower_bound: float | None = None, ax=None,
                      tol: float = 1e-8, title: str = "non-convex restarts against the convex optimum"):
    """Histogram of every non-convex run's signed relative excess ``(objective - p*) / |p*|``.

    ``tol`` is the **certified relative gap** of the convex solution, ``(p* - lb) / |p*|`` (the
    convention of the whole collection, explained once in notebook 01): a run with
    ``|excess| <= tol`` is within the certified accuracy of p*, so the certificate cannot tell it
    from p*. The axis is symmetric-log: linear inside that band and logarithmic outside, so runs a
    hair below p* stay visible. The green line is p* (excess 0); the red line is the certified
    lower bound ``(lb - p*) / |p*|``: by weak duality no run can lie left of it (when ``tol`` is
    the certified gap it sits at the band's left edge). Nothing is clipped.
    """
    ax = ax or plt.subplots(figsize=(6.4, 3.8))[1]
    excess = (np.asarray(objectives, dtype=float) - optimum) / abs(optimum)
    lo = min(float(excess.min()), -tol)
    if lower_bound is not None:
        lb_excess = (lower_bound - optimum) / abs(optimum)
        lo = min(lo, lb_excess)
    hi = max(float(excess.max()), tol)
    # bin edges equally spaced in the symlog coordinate, so every bar has the same drawn width
    def fwd(v):
        return np.sign(v) * np.log10(1 + np.abs(v) / tol)

    def inv(u):
        return np.sign(u) * tol * (10 ** np.abs(u) - 1)

    edges = inv(np.linspace(fwd(lo * 1.5), fwd(hi * 1.5), 31))
    ax.hist(excess, bins=edges, color="tab:gray", edgecolor="k")
    ax.set_xscale("symlog", linthresh=tol)
    ax.axvspan(-tol, tol, color="tab:green", alpha=0.15,
               label=f"certified-accuracy band |excess| <= gap = {tol:.2g}")
    ax.axvline(0.0, color="tab:green", lw=2, label="convex optimum p* (excess 0)")
    if lower_bound is not None:
        ax.axvline(lb_excess, color="tab:red", lw=2, ls="--",
                   label="certified lower bound (nothing may lie left of it)")
    below_tol = int(np.sum((excess < 0) & (excess >= -tol)))
    below = int(np.sum(excess < -tol))
    text = (f"p* = {optimum:.10g}\nruns: {excess.size}\nbelow p* inside the band: {below_tol}\n"
            f"below p* beyond the band: {below}\nlowest excess: {excess.min():+.2e}")
    if lower_bound is not None:
        text += f"\nlower bound = {lower_bound:.10g}"
    ax.text(1.02, 0.0, text, transform=ax.transAxes, ha="left", va="bottom", fontsize=8)
    ax.set_xticks(_symlog_ticks(lo * 1.5, hi * 1.5, tol))
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set(title=title, xlabel="signed relative excess (objective - p*) / |p*|  (dimensionless, symlog)",
           ylabel="number of restarts")
    ax.legend(loc="lower left", bbox_to_anchor=(1.02, 0.55), fontsize=8, frameon=False)
    return ax


def pattern_counts(ns, counts, bounds, sampled=None, ax=None, d: int | None = None):
    """Number of activation patterns against n: exact count, the bound, and (optional) how many
    a fixed number of random gates finds."""
    ax = ax or plt.subplots(figsize=(5.6, 3.8))[1]
    ax.semilogy(ns, counts, "o-", label="exact count (enumerated)")
    ax.semilogy(ns, bounds, "k--", label=r"bound $2r\,(e(n-1)/r)^r$")
    if sampled is not None:
        ax.semilogy(ns, sampled, "s:", label="found by random gates")
    ax.set(title=f"hyperplane arrangement patterns{f' (d = {d})' if d else ''}",
           xlabel="number of samples n", ylabel="number of patterns P")
    ax.legend()
    return ax


def singular_values(svals, ax=None, tol: float = 1e-7, title: str = "singular values of Z*"):
    """Bar chart (log scale) of the singular values of one or more lifted matrices; values below
    ``tol`` times the largest count as zero (their heads are dropped)."""
    ax = ax or plt.subplots(figsize=(5.6, 3.6))[1]
    svals = [np.asarray(s, float) for s in (svals if isinstance(svals, (list, tuple)) else [svals])]
    top = max(float(s.max()) for s in svals if s.size) or 1.0
    floor = tol * top
    x0 = 0
    for j, s in enumerate(svals):
        idx = np.arange(x0, x0 + s.size)
        ax.bar(idx, np.maximum(s, floor * 1e-3), color=np.where(s > floor, "tab:blue", "tab:gray"),
               edgecolor="k", label=None if len(svals) == 1 else f"Z_{j + 1}")
        x0 += s.size + 1
    ax.axhline(floor, color="tab:red", ls="--", lw=1, label=f"rank threshold ({tol:g} x largest)")
    ax.set_yscale("log")
    xlabel = ("index of the singular value (0 = largest)" if len(svals) == 1 else
              "index of the singular value (grouped by lifted matrix Z_j, largest first)")
    ax.set(title=title, xlabel=xlabel,
           ylabel="singular value (same units as Z)")
    ax.legend(fontsize=8, loc="upper right")
    return ax


def attention_map(affinity: np.ndarray, clusters: np.ndarray, ax=None,
                  title: str = "token affinity (sorted by planted cluster)"):
    """One sample's token-token affinity (s, s), rows and columns sorted by planted cluster, with
    the cluster boundaries drawn."""
    ax = ax or plt.subplots(figsize=(4.2, 3.8))[1]
    order = np.argsort(clusters, kind="stable")
    im = ax.imshow(affinity[np.ix_(order, order)], cmap="viridis")
    for b in np.flatnonzero(np.diff(clusters[order])) + 0.5:
        ax.axhline(b, color="w", lw=1)
        ax.axvline(b, color="w", lw=1)
    ax.set(title=title, xlabel="key token (sorted by planted cluster)",
           ylabel="query token (sorted by planted cluster)")
    ax.figure.colorbar(im, ax=ax, label="affinity ||contribution|| (output units)")
    return ax


def token_projection(X: np.ndarray, groups: np.ndarray, clusters: np.ndarray, ax=None,
                     title: str = "tokens in their top-2 principal directions"):
    """Tokens of all samples (n, s, d) projected on their two principal directions, coloured by
    learned group and marked by planted cluster (groups are matched to clusters per sample by
    majority, so colours agree when the grouping is right)."""
    ax = ax or plt.subplots(figsize=(4.6, 4.0))[1]
    T = np.asarray(X, float).reshape(-1, X.shape[-1])
    T = T - T.mean(0)
    P = T @ np.linalg.svd(T, full_matrices=False)[2][:2].T
    matched = np.empty_like(groups)
    for i, (g, c) in enumerate(zip(groups, clusters)):
        for k in np.unique(g):  # name each learned group after its most frequent planted cluster
            matched[i, g == k] = np.bincount(c[g == k]).argmax()
    markers = "osD^v<>p*h"
    for k in np.unique(clusters):
        sel = clusters.ravel() == k
        ax.scatter(P[sel, 0], P[sel, 1], c=[f"C{m}" for m in matched.ravel()[sel]],
                   marker=markers[k % len(markers)], edgecolors="k", s=26,
                   label=f"planted cluster {k}")
    ax.set(title=title, xlabel="principal direction 1 (feature units)",
           ylabel="principal direction 2 (feature units)")
    ax.legend(fontsize=7, title="marker: planted; colour: learned", title_fontsize=7)
    return ax


def arrangement_2d(X: np.ndarray, ax=None, title: str | None = None):
    r"""The hyperplane arrangement of n points in the plane, drawn in weight space.

    Each data point :math:`x_i` (arrow) gives the line :math:`\{w: x_i^\top w = 0\}` through the
    origin, perpendicular to it; the lines cut the plane into cones, and every weight vector w in
    one cone has the same activation pattern :math:`1\{Xw\ge0\}`, written as a bit string
    (bit i is point i; :func:`cvxattn_lib.arrangements.cones_2d`).  Cones are shaded by how many
    points they activate (the colour bar is the key); arrows show the directions of the points
    (their lengths do not matter).  ``X`` (n, 2).
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Wedge

    from .arrangements import cones_2d

    X = np.asarray(X, dtype=float)
    D, edges, mids = cones_2d(X)
    n = X.shape[0]
    ax = ax or plt.subplots(figsize=(5.8, 5.8))[1]
    R = 1.0
    greens = plt.get_cmap("Greens")
    shades = [greens(0.08 + 0.5 * k / n) for k in range(n + 1)]  # shade of a cone activating k points
    for j in range(D.shape[1]):
        shade = shades[int(D[:, j].sum())]
        ax.add_patch(Wedge((0, 0), R, np.degrees(edges[j]), np.degrees(edges[j + 1]),
                           facecolor=shade, edgecolor="none"))
        label = "".join("1" if b else "0" for b in D[:, j])
        ax.text(0.68 * R * np.cos(mids[j]), 0.68 * R * np.sin(mids[j]), label, ha="center",
                va="center", fontsize=8, family="monospace",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    for i, x in enumerate(X):
        x = x / np.linalg.norm(x)  # only directions matter: 1{x^T w >= 0} ignores lengths
        t = np.array([-x[1], x[0]])
        ax.plot([-R * t[0], R * t[0]], [-R * t[1], R * t[1]], color=f"C{i % 10}", lw=1.3)
        ax.annotate("", xy=0.3 * R * x, xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color=f"C{i % 10}", lw=1.6))
        # the label sits beyond the end of its line, on a white box, so the line does not cross it
        ax.text(1.1 * R * t[0], 1.1 * R * t[1], f"line {i + 1}", color=f"C{i % 10}",
                ha="center", va="center", fontsize=8, fontweight="bold", zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))
        ax.text(0.4 * R * x[0], 0.4 * R * x[1], f"$x_{{{i + 1}}}$", color=f"C{i % 10}",
                ha="center", va="center", fontsize=10)
    key = plt.cm.ScalarMappable(norm=BoundaryNorm(np.arange(n + 2) - 0.5, n + 1),
                                cmap=ListedColormap(shades))
    bar = ax.figure.colorbar(key, ax=ax, ticks=np.arange(n + 1), shrink=0.7, pad=0.03)
    bar.set_label("points the cone activates (count)")
    ax.set_aspect("equal")
    ax.set(xlim=(-1.25 * R, 1.25 * R), ylim=(-1.25 * R, 1.25 * R),
           title=title or f"{n} points in $\\mathbb{{R}}^2$: {D.shape[1]} cones of weight vectors",
           xlabel="first weight $w_1$ (direction only, a.u.)",
           ylabel="second weight $w_2$ (direction only, a.u.)")
    return ax


def planted_learned_legend(ax, K: int, loc: str = "upper left", anchor=(1.02, 1.0)):
    """Two keys for :func:`token_projection`, outside the axes: the marker *shape* of each planted
    cluster drawn in grey (shape carries no colour), and the *colour* of each learned group (a
    learned group takes the colour of the planted cluster most of its tokens belong to, per sample).
    Replaces the single legend :func:`token_projection` draws; returns the two legends."""
    from matplotlib.lines import Line2D

    if isinstance(K, bool) or not isinstance(K, int | np.integer) or K < 1:
        raise ValueError(f"K must be a positive integer (the number of planted clusters), got {K!r}")
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    markers = "osD^v<>p*h"
    shapes = [Line2D([], [], ls="none", marker=markers[k % len(markers)], markerfacecolor="0.7",
                     markeredgecolor="k", markersize=6, label=f"planted cluster {k}")
              for k in range(K)]
    colours = [Line2D([], [], ls="none", marker="s", markerfacecolor=f"C{k}", markeredgecolor="none",
                      markersize=8, label=f"learned group matched to cluster {k}") for k in range(K)]
    first = ax.legend(handles=shapes, fontsize=7, title="marker shape: planted", title_fontsize=7,
                      loc=loc, bbox_to_anchor=anchor)
    ax.add_artist(first)
    second = ax.legend(handles=colours, fontsize=7, title="colour: learned group", title_fontsize=7,
                       loc=loc, bbox_to_anchor=(anchor[0], anchor[1] - 0.45))
    return first, second
