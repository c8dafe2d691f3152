"""What every explorer widget shares: controls above a status line and an ``Output``, callbacks
routed through ``Output.capture`` (errors otherwise vanish in JupyterLab), the latest result in
``last`` (with the SHA-1 of the drawn PNG) and a redraw counter ``draws``, so tests can move a
control and check what changed."""

from __future__ import annotations

import hashlib
import io

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display


def log_slider(description: str, value: float, low: float, high: float,
               step: float = 0.1) -> W.FloatLogSlider:
    """A base-10 log slider that acts on release only (``continuous_update=False``)."""
    return W.FloatLogSlider(value=value, base=10, min=np.log10(low), max=np.log10(high), step=step,
                            description=description, continuous_update=False,
                            readout_format=".3g", style={"description_width": "initial"},
                            layout=W.Layout(width="480px"))


class Explorer(W.VBox):
    """Controls, a status line and a figure.  Subclasses implement :meth:`figure` (the static
    figure, returning ``(fig, info)`` with ``info`` a dict for :attr:`last`) and :meth:`status_html`,
    and call :meth:`_start` with their controls."""

    css_class = "cvxattn-explorer"

    def _start(self, controls: list) -> None:
        self.controls = controls
        self.status = W.HTML()
        self.output = W.Output()
        self.last: dict = {}
        self.draws = 0
        super().__init__([*controls, self.status, self.output])
        self.add_class(self.css_class)
        for control in controls:
            control.observe(self.output.capture(clear_output=False)(self._on_change), names="value")
        self._redraw()

    def values(self) -> dict:
        """The current control values, by the name each control is stored under."""
        raise NotImplementedError

    def figure(self, **values):
        raise NotImplementedError

    def status_html(self, info: dict) -> str:
        raise NotImplementedError

    def _on_change(self, change):
        self._redraw()

    def _redraw(self):
        values = self.values()
        fig, info = self.figure(**values)
        png = io.BytesIO()
        fig.savefig(png, format="png")
        self.last = {**values, **info, "figure_sha1": hashlib.sha1(png.getvalue()).hexdigest()}
        self.status.value = self.status_html(self.last)
        with self.output:
            self.output.clear_output(wait=True)
            display(fig)
        plt.close(fig)
        self.draws += 1
