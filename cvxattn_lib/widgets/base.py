"""What every explorer widget shares: controls above a status line and an ``Output``, callbacks
routed through ``Output.capture`` (errors otherwise vanish in JupyterLab), the latest result in
``last`` (with the SHA-1 of the drawn PNG) and a redraw counter ``draws``, so tests can move a
control and check what changed.

A move only draws: the β explorers compute the regularisation path over their slider's own
positions when they are built (:func:`slider_grid`, :func:`cvxattn_lib.solvers.regularisation_path`),
and each position's figure is rendered to PNG bytes once (all at construction with ``prerender``,
the default, else on first visit), so a move swaps an image."""

from __future__ import annotations

import hashlib
import time

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
from IPython.core.pylabtools import print_figure
from IPython.display import Image, display


def log_slider(description: str, value: float, low: float, high: float,
               step: float = 0.1) -> W.FloatLogSlider:
    """A base-10 log slider that acts on release only (``continuous_update=False``)."""
    return W.FloatLogSlider(value=value, base=10, min=np.log10(low), max=np.log10(high), step=step,
                            description=description, continuous_update=False,
                            readout_format=".3g", style={"description_width": "initial"},
                            layout=W.Layout(width="480px"))


def slider_grid(slider: W.FloatLogSlider) -> np.ndarray:
    """Every value a base-10 :class:`~ipywidgets.FloatLogSlider` can take, ascending:
    ``10 ** (min + k step)`` up to ``max`` (the grid a regularisation path is computed on)."""
    if slider.base != 10:
        raise ValueError(f"slider must be a base-10 log slider, got base {slider.base}")
    k = int(np.floor((slider.max - slider.min) / slider.step + 1e-9))
    return 10.0 ** (slider.min + slider.step * np.arange(k + 1))


def on_grid(beta: float, grid: np.ndarray, rtol: float = 1e-6) -> float:
    """The grid value within ``rtol`` of ``beta`` (a slider value computed by the browser may
    differ from numpy's grid in the last digits), else ``beta`` itself."""
    beta = float(beta)
    near = float(grid[int(np.argmin(np.abs(np.log(grid) - np.log(beta))))])
    return near if abs(near - beta) <= rtol * beta else beta


class Explorer(W.VBox):
    """Controls, a status line and a figure.  Subclasses implement :meth:`figure` (the static
    figure, returning ``(fig, info)`` with ``info`` a dict for :attr:`last`) and :meth:`status_html`,
    and call :meth:`_start` with their controls."""

    css_class = "cvxattn-explorer"

    def _start(self, controls: list, prerender: list | None = None, progress: bool = True) -> None:
        """Lay out ``controls``, the status line and the figure, and draw.  ``prerender``: a list of
        control-value dicts whose figures are rendered now (with a progress bar if ``progress``)."""
        self.controls = controls
        if not hasattr(self, "status"):
            self.status = W.HTML()
        self.output = W.Output()
        self.last: dict = {}
        self.draws = 0
        self.renders = 0  # figures rendered (a revisit reuses its PNG)
        self.draw_ms: list[float] = []  # kernel time of each redraw (values -> status and image)
        self._pngs: dict = {}
        if prerender:
            from tqdm.auto import tqdm

            for values in tqdm(prerender, desc="rendering figures", leave=False,
                               disable=not progress):
                self._render(values)
        super().__init__([*controls, self.status, self.output])
        self.add_class(self.css_class)
        for control in controls:
            control.observe(self.output.capture(clear_output=False)(self._on_change), names="value")
        self._redraw()

    def path_summary(self) -> str:
        """One line per regularisation path the explorer holds: positions, β range, solver, whether
        it was loaded from the on-disk cache or computed (and how long that took), largest
        certified relative gap."""
        paths = getattr(self, "paths", None) or {"": self.path}
        lines = []
        for key, p in paths.items():
            name = key if isinstance(key, str) else f"P = {key[0]}, σ = {key[1]:g}"
            how = ("loaded from the on-disk cache" if p.cached
                   else f"computed in {p.wall_time:.1f} s")
            lines.append(f"β path{' (' + name + ')' if name else ''}: {len(p.betas)} slider "
                         f"positions from {p.betas[0]:.3g} to {p.betas[-1]:.3g}, solver {p.method}, "
                         f"{how}; largest certified relative gap {p.rel_gaps.max():.1e}")
        return "\n".join(lines)

    def values(self) -> dict:
        """The current control values, by the name each control is stored under."""
        raise NotImplementedError

    def figure(self, **values):
        raise NotImplementedError

    def status_html(self, info: dict) -> str:
        raise NotImplementedError

    def _on_change(self, change):
        self._redraw()

    @staticmethod
    def _key(values: dict) -> tuple:
        return tuple((k, round(v, 9) if isinstance(v, float) else v) for k, v in sorted(values.items()))

    def _render(self, values: dict) -> tuple[bytes, dict]:
        """The PNG bytes (as the inline backend would show the figure) and info of ``values``,
        rendered once and kept."""
        key = self._key(values)
        if key not in self._pngs:
            fig, info = self.figure(**values)
            png = print_figure(fig, "png")
            plt.close(fig)
            self._pngs[key] = (png, info)
            self.renders += 1
        return self._pngs[key]

    def _redraw(self):
        t0 = time.perf_counter()
        values = self.values()
        png, info = self._render(values)
        self.last = {**values, **info, "figure_sha1": hashlib.sha1(png).hexdigest()}
        self.status.value = self.status_html(self.last)
        with self.output:
            self.output.clear_output(wait=True)
            display(Image(data=png, format="png"))
        self.draws += 1
        self.draw_ms.append(1e3 * (time.perf_counter() - t0))
