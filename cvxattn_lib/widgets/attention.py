"""Explorers of notebooks 02 and 03: the rank of linear attention's lifted matrix against β, and
token clustering by gated-ReLU attention (and the gates it uses) against β, the number of gates
and the noise.  Both compute the regularisation path over their β slider's positions
(:func:`cvxattn_lib.solvers.regularisation_path`: warm-started ADMM on these squared-loss programs,
cached on disk), so moving β only draws; 03 computes the path of each (gates, noise) setting the
first time it is chosen, saying so in its status line."""

from __future__ import annotations

from functools import lru_cache

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from .. import clustering, plots
from ..convex import fit_self_attention
from .base import Explorer, log_slider, on_grid, slider_grid


class AttentionRankExplorer(Explorer):
    """A β slider over the linear self-attention program, drawing the singular values of Z*: the
    number of heads the optimum needs is rank(Z*).

    At construction the path over every slider position is computed (or loaded from the cache);
    :meth:`solve` serves grid values from it and solves any other β with CVXPY (cached).

    ``last``: ``beta``, ``value``, ``n_heads``, ``rel_gap``, ``figure_sha1``; ``draws`` counts
    redraws, ``off_grid_solves`` the solves off the path.
    """

    css_class = "cvxattn-rank-explorer"

    def __init__(self, X, Y, beta: float = 0.1, beta_range: tuple[float, float] = (1e-3, 10.0),
                 step: float = 0.1, cache: bool = True, progress: bool = True,
                 prerender: bool = True):
        from ..solvers import regularisation_path

        self.X, self.Y = np.asarray(X, float), np.asarray(Y, float)
        self.slider = log_slider("β (weight decay)", beta, *beta_range, step=step)
        self.grid = slider_grid(self.slider)
        self.path = regularisation_path("self_attention", self.X, self.Y, betas=self.grid,
                                        activation="linear", cache=cache, progress=progress,
                                        desc="β path (linear attention)")
        self.off_grid_solves = 0

        def fit(beta: float):
            k = self.path.index(beta)
            if k is not None:
                return self.path.fits[k]
            self.off_grid_solves += 1
            return fit_self_attention(self.X, self.Y, beta, activation="linear")

        self.solve = lru_cache(maxsize=64)(fit)
        self._start([self.slider], [{"beta": float(b)} for b in self.grid] if prerender else None,
                    progress)

    def values(self) -> dict:
        return {"beta": on_grid(self.slider.value, self.grid)}

    def figure(self, beta: float):
        """Singular values of Z* at ``beta`` (also the static figure); returns ``(fig, info)``."""
        fit = self.solve(round(float(beta), 12))
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
        plots.singular_values(fit.singular_values(), ax=ax, tol=fit.rank_tol,
                              title=f"linear attention, β = {beta:.3g}: rank(Z*) = {fit.n_heads}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        return fig, {"value": fit.value, "n_heads": fit.n_heads,
                     "rel_gap": fit.certificate()["rel_gap"]}

    def status_html(self, info: dict) -> str:
        return (f"<b>β = {info['beta']:.3g}</b> · optimum p* = {info['value']:.6g} · "
                f"heads = rank(Z*) = {info['n_heads']} · certified gap = {info['rel_gap']:.1e}")


class ClusteringExplorer(Explorer):
    """Sliders for β, the number of gates and the noise of notebook 03's routing toy
    (:func:`~cvxattn_lib.clustering.routing_clusters`), drawing one sample's token affinity under
    the gated-ReLU attention optimum and the tokens coloured by learned group; the status line gives
    the ARI against the planted clusters, how many gates carry heads and the certified gap.

    The β path of the opening (gates, noise) is computed at construction; the path of another
    (gates, noise) the first time it is chosen (the status line says so while it computes), each
    cached in memory and on disk, so a β move only draws.  With ``prerender`` the figures of the
    opening setting's β positions are rendered at construction; other settings' figures are rendered
    on their first visit.  The β slider steps by ``step`` = 0.2 decades (26 positions over its five
    decades: each figure takes about a second to render on a busy 2-core CPU).  β off the slider's
    grid is solved with CVXPY.

    ``last``: ``beta``, ``n_gates``, ``noise``, ``ari``, ``active``, ``n_heads``, ``rel_gap``,
    ``figure_sha1``; ``paths`` maps (gates, noise) to its path.
    """

    css_class = "cvxattn-clustering-explorer"

    def __init__(self, n: int = 30, s: int = 6, K: int = 3, values: int = 1, beta: float = 10.0,
                 n_gates: int = 16, noise: float = 0.1, seed: int = 0,
                 beta_range: tuple[float, float] = (1e-2, 1e3), max_gates: int = 16,
                 step: float = 0.2, cache: bool = True, progress: bool = True,
                 prerender: bool = True):
        self.sizes, self.seed = dict(n=n, s=s, K=K, values=values), seed
        self.cache, self.progress = cache, progress
        self.paths: dict = {}
        self.off_grid_solves = 0
        self.status = W.HTML()

        def solve(beta: float, n_gates: int, noise: float):
            X, Y, C = clustering.routing_clusters(noise=noise, seed=seed, **self.sizes)
            path = self.path_for(n_gates, noise)
            k = path.index(beta)
            if k is not None:
                fit = path.fits[k]
            else:
                self.off_grid_solves += 1
                fit = fit_self_attention(X, Y, beta, activation="gated_relu", n_gates=n_gates,
                                         seed=seed)
            groups = (clustering.token_groups(fit.weights(), "gated_relu", X, K, seed)
                      if fit.n_heads else None)
            return X, C, fit, groups

        self.solve = lru_cache(maxsize=256)(solve)
        self.slider = log_slider("β (weight decay)", beta, *beta_range, step=step)
        self.grid = slider_grid(self.slider)
        self.gates = W.IntSlider(value=n_gates, min=1, max=max_gates, description="gates P",
                                 continuous_update=False, style={"description_width": "initial"})
        self.noise = W.FloatSlider(value=noise, min=0.02, max=0.5, step=0.02,
                                   description="content noise σ", continuous_update=False,
                                   readout_format=".2f", style={"description_width": "initial"})
        self.path_for(int(n_gates), round(float(noise), 6))
        opening = [{"beta": float(b), "n_gates": int(n_gates), "noise": float(noise)}
                   for b in self.grid]
        self._start([self.slider, self.gates, self.noise], opening if prerender else None,
                    progress)

    def path_for(self, n_gates: int, noise: float):
        """The β path at these gates and noise: computed (status line and progress bar) the first
        time, then kept."""
        from ..solvers import regularisation_path

        key = (int(n_gates), round(float(noise), 6))
        if key not in self.paths:
            X, Y, _ = clustering.routing_clusters(noise=key[1], seed=self.seed, **self.sizes)
            head = f"P = {key[0]}, σ = {key[1]:.2f}: computing the β path ({len(self.grid)} values)"

            def say(text):
                self.status.value = f"<i>{head}; {text} …</i>"

            self.paths[key] = regularisation_path(
                "self_attention", X, Y, betas=self.grid, activation="gated_relu", n_gates=key[0],
                seed=self.seed, cache=self.cache, progress=self.progress, status=say,
                desc=f"β path (P = {key[0]}, σ = {key[1]:.2f})")
        return self.paths[key]

    def values(self) -> dict:
        return {"beta": on_grid(self.slider.value, self.grid), "n_gates": int(self.gates.value),
                "noise": float(self.noise.value)}

    def figure(self, beta: float, n_gates: int, noise: float):
        """Affinity of sample 0 and the learned groups (also the static figure); ``(fig, info)``.
        Above β_max no gate carries a head: the affinity is 0 and the ARI is NaN."""
        X, C, fit, groups = self.solve(round(float(beta), 12), int(n_gates), round(float(noise), 6))
        active = int(clustering.active_gates(fit.Z).sum())
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.0))
        if groups is None:
            aff, ari = np.zeros(C.shape + C.shape[-1:]), float("nan")
            axes[1].text(0.5, 0.5, "no head left: nothing to group", ha="center", va="center",
                         transform=axes[1].transAxes)
            axes[1].set(title="learned groups: none (Z* = 0)", xticks=[], yticks=[])
        else:
            aff = clustering.attention_affinity(fit.weights(), "gated_relu", X)
            ari = clustering.mean_ari(groups, C)
            plots.token_projection(X[..., :2], groups, C, ax=axes[1],  # the content channels
                                   title=f"learned groups (content channels), mean ARI = {ari:.3f}")
            plots.planted_learned_legend(axes[1], int(self.sizes["K"]))  # grey shapes, colour key
        plots.attention_map(aff[0], C[0], ax=axes[0],
                            title=f"sample 0: affinity (β = {beta:.3g}, {active} of {n_gates} gates used)")
        return fig, {"ari": ari, "active": active, "n_heads": fit.n_heads, "value": fit.value,
                     "rel_gap": fit.certificate()["rel_gap"]}

    def status_html(self, info: dict) -> str:
        return (f"<b>β = {info['beta']:.3g}, P = {info['n_gates']}, σ = {info['noise']:.2f}</b> · "
                f"ARI against the planted clusters = {info['ari']:.3f} · gates carrying heads = "
                f"{info['active']} of {info['n_gates']} · heads = {info['n_heads']} · "
                f"certified gap = {info['rel_gap']:.1e}")


def attention_rank_explorer(X, Y, beta: float = 0.1, **kwargs) -> AttentionRankExplorer:
    """Build the rank explorer for linear attention on X (n, s, d), Y (n, s, c)."""
    return AttentionRankExplorer(X, Y, beta=beta, **kwargs)


def clustering_explorer(beta: float = 10.0, n_gates: int = 16, noise: float = 0.1,
                        **kwargs) -> ClusteringExplorer:
    """Build the clustering explorer on notebook 03's routing toy (sizes n, s, K, values and the
    toy's ``seed`` as keywords)."""
    return ClusteringExplorer(beta=beta, n_gates=n_gates, noise=noise, **kwargs)
