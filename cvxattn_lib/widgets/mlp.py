"""The beta explorer of notebook 01: a two-layer convex program re-solved as β moves."""

from __future__ import annotations

from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np

from .. import plots
from ..convex import MLPProgram
from .base import Explorer, log_slider


class BetaExplorer(Explorer):
    """A log-scale beta slider that re-solves a two-layer convex program and redraws the decision
    boundary, the number of active neurons and the objective.

    ``last`` holds the latest result (``beta``, ``value``, ``n_neurons``, ``rel_gap``,
    ``figure_sha1`` of the drawn PNG), and
    ``draws`` counts redraws, so a test can move the slider and see what changed.
    """

    css_class = "cvxattn-beta-explorer"

    def __init__(self, X, y, activation: str = "relu", beta: float = 0.1,
                 beta_range: tuple[float, float] = (1e-3, 10.0), gates=None, n_gates=None,
                 seed: int = 0):
        self.X, self.y = np.asarray(X, float), np.asarray(y, float)
        self.program = MLPProgram(self.X, self.y, activation, gates=gates, n_gates=n_gates,
                                  seed=seed)
        self.solve = lru_cache(maxsize=64)(self.program.fit)
        self.slider = log_slider("β (weight decay)", beta, *beta_range)
        self._start([self.slider])

    def values(self) -> dict:
        return {"beta": float(self.slider.value)}

    def figure(self, beta: float):
        """The decision-boundary figure at ``beta`` (also usable as a static figure); returns
        ``(fig, info)``."""
        fit = self.solve(round(float(beta), 12))
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        plots.decision_boundary(fit.predict, self.X, self.y, ax=ax,
                                title=f"convex {fit.activation} network, β = {beta:.3g}: "
                                      f"{fit.n_neurons} neurons")
        return fig, {"value": fit.value, "n_neurons": fit.n_neurons,
                     "rel_gap": fit.certificate()["rel_gap"]}

    def status_html(self, info: dict) -> str:
        return (f"<b>β = {info['beta']:.3g}</b> · optimum p* = {info['value']:.6g} · "
                f"active neurons = {info['n_neurons']} · certified gap = {info['rel_gap']:.1e}")


def mlp_beta_explorer(X, y, activation: str = "relu", beta: float = 0.1, **kwargs) -> BetaExplorer:
    """Build the beta explorer for a 2-D toy (X with x1, x2 and a bias column; y in {-1, +1})."""
    return BetaExplorer(X, y, activation=activation, beta=beta, **kwargs)
