"""The explorers of notebook 05 (CIFAR-100 heads): a β slider over a precomputed sweep (nothing is
solved when it moves) and an image picker for the token groups of the attention heads."""

from __future__ import annotations

import html
from functools import lru_cache

import ipywidgets as W
import numpy as np

from .base import Explorer


class SweepExplorer(Explorer):
    """A ``SelectionSlider`` over the β grid of a results dict (from ``cal.cifar.explore.sweep`` or a
    results JSON); redraws accuracy and rank against β with the chosen β marked, and reports each
    head's top-1 and units there.  With ``prerender`` (the default) the figure of every β is
    rendered at construction, so a move swaps an image.  ``last`` holds ``beta``, ``top1`` (head ->
    accuracy), ``units`` and ``figure_sha1``; ``draws`` counts redraws."""

    css_class = "cvxattn-cifar-sweep-explorer"

    def __init__(self, results: dict, beta: float | None = None, prerender: bool = True,
                 progress: bool = True):
        from ..cifar.cli import check_results, row_ok

        check_results(results)
        results = dict(results, rows=[r for r in results["rows"] if row_ok(r)])  # failed rows: no numbers
        from ..cifar.explore import grid_key

        self.key = grid_key(results)  # 'beta', or 'beta_fraction' for a grid of beta / beta_max
        betas = sorted({float(r[self.key]) for r in results["rows"]})
        if not betas:
            raise ValueError("results has no rows (or only failed ones); run the sweep first")
        self.results = results
        start = betas[len(betas) // 2] if beta is None else min(
            betas, key=lambda b: abs(np.log(b) - np.log(float(beta))))
        self.slider = W.SelectionSlider(options=[(f"{b:.3g}", b) for b in betas], value=start,
                                        description="β / β_max" if self.key == "beta_fraction"
                                        else "β (weight decay)", continuous_update=False,
                                        style={"description_width": "initial"},
                                        layout=W.Layout(width="480px"))
        self._start([self.slider], [{"beta": float(b)} for b in betas] if prerender else None,
                    progress)

    def values(self) -> dict:
        return {"beta": float(self.slider.value)}

    def figure(self, beta: float):
        """Accuracy and rank against β with ``beta`` marked; returns ``(fig, info)``."""
        from ..cifar import explore

        rows = explore.at_beta(self.results, beta)["rows"]
        fig = explore.plot_sweep(self.results, beta=beta)
        return fig, {"top1": {r["head"]: r["top1"] for r in rows},
                     "units": {r["head"]: r.get("units") for r in rows}}

    def status_html(self, info: dict) -> str:
        """The status line; head names come from a results file, so they are HTML-escaped."""
        best = max(info["top1"], key=info["top1"].get)
        units = ", ".join(f"{html.escape(str(h))} {u}" for h, u in info["units"].items() if u is not None)
        at = "β / β_max" if self.key == "beta_fraction" else "β"
        return (f"<b>{at} = {info['beta']:.3g}</b> · best head {html.escape(str(best))} "
                f"({100 * info['top1'][best]:.1f}% top-1) · units: {units}")


class TokenGroupExplorer(Explorer):
    """An image picker (``Dropdown``) for the token groups of the attention (and gated-ReLU MLP)
    heads, drawn over the patch grid of the image.  ``images`` uint8 (n, 3, H, W), ``X_grid``
    (n, s, d) their reduced tokens on the full grid, ``models`` head -> trained model (from
    ``cal.cifar.explore.group_models``), ``class_names`` to label the picker, ``underlay`` as in
    ``cal.cifar.explore.plot_token_groups``.  With ``prerender`` (the default) the figure of every
    choice is rendered at construction (each takes a few hundred ms: the groups and the figure), so
    a pick swaps an image.  ``last`` holds ``index``, ``groups`` (head -> number of groups) and
    ``figure_sha1``."""

    css_class = "cvxattn-cifar-token-explorer"

    def __init__(self, images, X_grid, models: dict, labels=None, class_names=None, K: int = 4,
                 index: int = 0, n_choices: int = 12, seed: int = 0, underlay: bool = True,
                 prerender: bool = True, progress: bool = True):
        from ..cifar import explore

        self.images, self.X_grid, self.models = np.asarray(images), X_grid, dict(models)
        if len(self.images) != len(X_grid):
            raise ValueError(f"images ({len(self.images)}) and X_grid ({len(X_grid)}) must hold the "
                             "same images")
        if not self.models:
            raise ValueError(f"models is empty; pass trained heads among {', '.join(explore.GROUP_HEADS)}")
        self.K, self.seed, self.underlay = K, seed, bool(underlay)
        n = min(int(n_choices), len(self.images))
        names = [f"test image {i}" + ("" if labels is None or class_names is None
                                      else f" ({class_names[int(labels[i])]})") for i in range(n)]
        self.picker = W.Dropdown(options=list(zip(names, range(n))), value=int(index), description="image",
                                 layout=W.Layout(width="360px"))
        self.groups = lru_cache(maxsize=64)(
            lambda i: explore.image_groups(self.models, self.X_grid, i, K=self.K, seed=self.seed))
        self._start([self.picker], [{"index": i} for i in range(n)] if prerender else None, progress)

    def values(self) -> dict:
        return {"index": int(self.picker.value)}

    def figure(self, index: int):
        """The image and each head's token groups; returns ``(fig, info)``."""
        from ..cifar import explore

        groups = self.groups(int(index))
        fig = explore.plot_token_groups(self.images[index], groups, underlay=self.underlay,
                                        title=f"token groups of test image {index} (K = {self.K} per head)")
        return fig, {"groups": {h: int(len(np.unique(g))) for h, g in groups.items()}}

    def status_html(self, info: dict) -> str:
        return f"<b>image {info['index']}</b> · groups: " + ", ".join(
            f"{html.escape(str(h))} {k}" for h, k in info["groups"].items())


def cifar_sweep_explorer(results: dict, beta: float | None = None, **kwargs) -> SweepExplorer:
    """Build the β explorer over a precomputed sweep (no solving on move; ``prerender``,
    ``progress`` as :class:`SweepExplorer`)."""
    return SweepExplorer(results, beta=beta, **kwargs)


def cifar_token_explorer(images, X_grid, models: dict, **kwargs) -> TokenGroupExplorer:
    """Build the image picker for the token groups of the attention heads (``prerender``,
    ``progress`` and the rest as :class:`TokenGroupExplorer`)."""
    return TokenGroupExplorer(images, X_grid, models, **kwargs)
