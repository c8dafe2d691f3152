"""The beta explorer of notebook 01: a two-layer convex program over the positions of a β slider."""

from __future__ import annotations

from functools import cached_property, lru_cache

import matplotlib.pyplot as plt
import numpy as np

from .. import plots
from ..convex import MLPProgram
from .base import Explorer, log_slider, on_grid, slider_grid


class BetaExplorer(Explorer):
    """A log-scale beta slider over a two-layer convex program: the decision boundary, the number
    of active neurons, the optimum and its certified gap.

    At construction the program is solved at every slider position
    (:func:`cvxattn_lib.solvers.regularisation_path`, with a progress bar; loaded from the on-disk
    cache when the same data and options were solved before), so a move only draws.  The exact
    ReLU program (cone constraints) is solved with CVXPY on a working set of patterns with exact
    KKT checks (:mod:`cvxattn_lib.solvers.relu_path`); gated ReLU and linear with warm-started
    ADMM or FISTA.  :meth:`solve` serves grid values from the path and solves any other
    β with CVXPY (cached).

    ``last`` holds the latest result (``beta``, ``value``, ``n_neurons``, ``rel_gap``,
    ``figure_sha1`` of the drawn PNG), ``draws`` counts redraws and ``off_grid_solves`` the solves
    :meth:`solve` needed off the path, so a test can move the slider and see what changed.
    """

    css_class = "cvxattn-beta-explorer"

    def __init__(self, X, y, activation: str = "relu", beta: float = 0.1,
                 beta_range: tuple[float, float] = (1e-3, 10.0), gates=None, n_gates=None,
                 seed: int = 0, step: float = 0.1, cache: bool = True, progress: bool = True,
                 prerender: bool = True):
        from ..solvers import regularisation_path

        self.X, self.y = np.asarray(X, float), np.asarray(y, float)
        self._program_options = dict(activation=activation, gates=gates, n_gates=n_gates, seed=seed)
        self.slider = log_slider("β (weight decay)", beta, *beta_range, step=step)
        self.grid = slider_grid(self.slider)
        self.path = regularisation_path("mlp", self.X, self.y, betas=self.grid,
                                        activation=activation, gates=gates, n_gates=n_gates,
                                        seed=seed, cache=cache, progress=progress,
                                        desc="β path (notebook 01)")
        self.off_grid_solves = 0
        self.solve = lru_cache(maxsize=64)(self._solve)
        self._start([self.slider], [{"beta": float(b)} for b in self.grid] if prerender else None,
                    progress)

    @cached_property
    def program(self) -> MLPProgram:
        """The CVXPY program for β off the slider's grid, built at the first such β (the path
        builds its own; enumerating the patterns twice at construction cost ~80 ms on 01's spiral)."""
        o = self._program_options
        return MLPProgram(self.X, self.y, o["activation"], gates=o["gates"], n_gates=o["n_gates"],
                          seed=o["seed"])

    def _solve(self, beta: float):
        k = self.path.index(beta)
        if k is not None:
            return self.path.fits[k]
        self.off_grid_solves += 1
        return self.program.fit(beta)

    def values(self) -> dict:
        return {"beta": on_grid(self.slider.value, self.grid)}

    def figure(self, beta: float):
        """The decision-boundary figure at ``beta`` (also usable as a static figure); returns
        ``(fig, info)``."""
        fit = self.solve(round(float(beta), 12))
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        zero = fit.n_neurons == 0  # at or above beta_max: the zero network, f = 0 everywhere
        plots.decision_boundary((lambda P: np.zeros(len(P))) if zero else fit.predict, self.X,
                                self.y, ax=ax,
                                title=f"convex {fit.activation} network, β = {beta:.3g}: "
                                      f"{fit.n_neurons} neurons" + (" (f = 0)" if zero else ""))
        return fig, {"value": fit.value, "n_neurons": fit.n_neurons,
                     "rel_gap": fit.certificate()["rel_gap"]}

    def status_html(self, info: dict) -> str:
        return (f"<b>β = {info['beta']:.3g}</b> · optimum p* = {info['value']:.6g} · "
                f"active neurons = {info['n_neurons']} · certified gap = {info['rel_gap']:.1e}")


def mlp_beta_explorer(X, y, activation: str = "relu", beta: float = 0.1, **kwargs) -> BetaExplorer:
    """Build the beta explorer for a 2-D toy (X with x1, x2 and a bias column; y in {-1, +1})."""
    return BetaExplorer(X, y, activation=activation, beta=beta, **kwargs)
