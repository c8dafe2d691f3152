"""Widget builders: one call returns the widget; no global state, so tests can drive them.

Callbacks draw into an ``ipywidgets.Output`` through ``Output.capture`` (errors would otherwise
vanish in JupyterLab); solves are cached per widget, and sliders that solve use
``continuous_update=False``.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from . import plots
from .convex import MLPProgram


class BetaExplorer(W.VBox):
    """A log-scale beta slider that re-solves a two-layer convex program and redraws the decision
    boundary, the number of active neurons and the objective.

    ``last`` holds the latest result (``beta``, ``value``, ``n_neurons``, ``rel_gap``,
    ``figure_sha1`` of the drawn PNG), and
    ``draws`` counts redraws, so a test can move the slider and see what changed.
    """

    def __init__(self, X, y, activation: str = "relu", beta: float = 0.1,
                 beta_range: tuple[float, float] = (1e-3, 10.0), gates=None, n_gates=None,
                 seed: int = 0):
        self.X, self.y = np.asarray(X, float), np.asarray(y, float)
        self.program = MLPProgram(self.X, self.y, activation, gates=gates, n_gates=n_gates,
                                  seed=seed)
        self.solve = lru_cache(maxsize=64)(self.program.fit)
        self.slider = W.FloatLogSlider(value=beta, base=10, min=np.log10(beta_range[0]),
                                       max=np.log10(beta_range[1]), step=0.1,
                                       description="β (weight decay)", continuous_update=False,
                                       readout_format=".3g", style={"description_width": "initial"},
                                       layout=W.Layout(width="480px"))
        self.status = W.HTML()
        self.output = W.Output()
        self.last: dict = {}
        self.draws = 0
        super().__init__([self.slider, self.status, self.output])
        self.add_class("cvxattn-beta-explorer")
        self.slider.observe(self.output.capture(clear_output=False)(self._on_change), names="value")
        self._redraw(beta)

    def _on_change(self, change):
        self._redraw(change["new"])

    def figure(self, beta: float):
        """The decision-boundary figure at ``beta`` (also usable as a static figure)."""
        fit = self.solve(round(float(beta), 12))
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        plots.decision_boundary(fit.predict, self.X, self.y, ax=ax,
                                title=f"convex {fit.activation} network, β = {beta:.3g}: "
                                      f"{fit.n_neurons} neurons")
        return fig, fit

    def _redraw(self, beta: float):
        fig, fit = self.figure(beta)
        cert = fit.certificate()
        png = io.BytesIO()
        fig.savefig(png, format="png")
        self.last = {"beta": beta, "value": fit.value, "n_neurons": fit.n_neurons,
                     "rel_gap": cert["rel_gap"],
                     "figure_sha1": hashlib.sha1(png.getvalue()).hexdigest()}
        self.status.value = (f"<b>β = {beta:.3g}</b> · optimum p* = {fit.value:.6g} · "
                             f"active neurons = {fit.n_neurons} · certified gap = "
                             f"{cert['rel_gap']:.1e}")
        with self.output:
            self.output.clear_output(wait=True)
            display(fig)
        plt.close(fig)
        self.draws += 1


def mlp_beta_explorer(X, y, activation: str = "relu", beta: float = 0.1, **kwargs) -> BetaExplorer:
    """Build the beta explorer for a 2-D toy (X with x1, x2 and a bias column; y in {-1, +1})."""
    return BetaExplorer(X, y, activation=activation, beta=beta, **kwargs)
