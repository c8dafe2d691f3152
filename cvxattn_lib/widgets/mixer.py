r"""The β explorer of notebook 04: three token-mixing convex programs (derived in this collection)
over the positions of a β slider, with the singular-value spectra of their lifted matrices.  The
three regularisation paths are computed when the explorer is built (warm-started ADMM,
:func:`cvxattn_lib.solvers.regularisation_path`, cached on disk), so a move only draws.

* Bilinear token-and-channel mixing (Mixer-style, linear activation):
  :math:`Z=\sum_j\mathrm{vec}(A_j)\mathrm{vec}(B_j)^\top` (:math:`s^2\times dc`), rows indexed by
  token pairs, columns by channel pairs; rank Z = heads.
* Shared-kernel circular convolution: :math:`Z=\sum_jk_j\mathrm{vec}(B_j)^\top`
  (:math:`s\times dc`), rows indexed by token offsets; rank Z = kernels.
* Two-layer per-mode channel map (AFNO-like): one channel map :math:`R_w` (d, c) per rfft mode;
  the block nuclear norm
  :math:`\sum_w\|R_w\|_*` switches whole modes off (the token dimension, in Fourier) and lowers the
  rank of the others (the feature dimension).
"""

from __future__ import annotations

from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np

from ..convex import fit_fno, fit_mixer
from ..convex.attention import _check
from ..mixer_tasks import quiet_solve
from .base import Explorer, log_slider, on_grid, slider_grid

NAMES = {"mixer": "bilinear mixing (Mixer-style)", "circulant": "circular convolution (shared kernels)",
         "spectral": "two-layer per-mode map (AFNO-like)"}  # display names
FLOOR = 1e-9  # singular values are drawn clipped at FLOOR times the largest of the panel


def numerical_rank(sv: np.ndarray, rtol: float = 1e-5) -> int:
    """Singular values above ``rtol`` times max(1, the largest): the rank that counts heads."""
    sv = np.asarray(sv, float)
    if sv.size == 0:
        return 0
    return int(np.sum(sv > rtol * max(1.0, sv.max())))


class MixerExplorer(Explorer):
    """A log-scale β slider over three convex token-mixing programs on (X, Y) -- bilinear mixing
    (Mixer-style), the shared-kernel circular convolution and the two-layer per-mode channel map
    (AFNO-like) -- drawing the singular values of their lifted matrices.

    At construction the three paths over every slider position are computed (or loaded from the
    cache); :meth:`solve` serves grid values from them (``retried`` is then empty: ADMM stops at
    its certified gap) and solves any other β with CVXPY (cached).

    ``last`` holds ``beta``, the optima ``mixer_value``, ``circulant_value``,
    ``spectral_value``, the ranks ``mixer_rank`` (heads), ``circulant_rank`` (kernels),
    ``spectral_modes`` (active rfft modes), ``spectral_rank`` (largest rank of a mode),
    ``rel_gap`` (the largest certified relative gap of the three), ``rel_gaps`` (each one),
    ``rank_threshold`` (singular values above it count: ``rank_rtol`` times max(1, the largest)),
    ``retried`` (the programs whose first, tight-tolerance solve ended inaccurate and was re-run)
    and ``figure_sha1``;
    ``draws`` counts redraws, ``off_grid_solves`` the solves off the paths; ``solve(beta)`` is
    cached.
    """

    css_class = "cvxattn-mixer-explorer"

    def __init__(self, X, Y, beta: float = 0.1, beta_range: tuple[float, float] = (1e-3, 10.0),
                 rank_rtol: float = 1e-5, step: float = 0.1, cache: bool = True,
                 progress: bool = True, prerender: bool = True):
        from ..solvers import regularisation_path

        X, Yf, c = _check(X, Y, "squared")
        n, s, d = X.shape
        self.X, self.Y = X, Yf.reshape(n, s, c)
        self.rank_rtol = rank_rtol
        self.slider = log_slider("β (weight decay)", beta, *beta_range, step=step)
        self.grid = slider_grid(self.slider)
        self.paths = {key: regularisation_path(kind, self.X, self.Y, betas=self.grid,
                                               activation=act, cache=cache, progress=progress,
                                               desc=f"β path ({NAMES[key]})")
                      for key, kind, act in [("mixer", "mixer", "linear"),
                                             ("circulant", "fno", "circulant"),
                                             ("spectral", "fno", "spectral")]}
        self.off_grid_solves = 0
        self.solve = lru_cache(maxsize=64)(self._solve)
        self._start([self.slider], [{"beta": float(b)} for b in self.grid] if prerender else None,
                    progress)

    def _solve(self, beta: float) -> dict:
        """The three fits at ``beta``: ``{'mixer', 'circulant', 'spectral'}``, and ``'retried'``.
        On the slider's grid they come from the paths (``retried`` empty).  Off it they are solved
        with CVXPY, and ``retried`` names the programs whose first solve (tight tolerances) ended
        ``optimal_inaccurate``, so that :func:`cvxattn_lib.cvxpy_solve.solve` re-ran them (CVXPY's
        "Solution may be inaccurate" warning is recorded here instead of printed; the certificate
        of the final fit is what says how close to the optimum it is)."""
        k = self.paths["mixer"].index(beta)
        if k is not None:
            return {key: p.fits[k] for key, p in self.paths.items()} | {"retried": ()}
        self.off_grid_solves += 1
        fits, retried = {}, []
        for key, fit in [("mixer", lambda: fit_mixer(self.X, self.Y, beta)),
                         ("circulant", lambda: fit_fno(self.X, self.Y, beta, "circulant")),
                         ("spectral", lambda: fit_fno(self.X, self.Y, beta, "spectral"))]:
            fits[key], again = quiet_solve(fit)
            if again:
                retried.append(key)
        return fits | {"retried": tuple(retried)}

    def values(self) -> dict:
        return {"beta": on_grid(self.slider.value, self.grid)}

    def spectra(self, beta: float) -> dict:
        """Singular values at ``beta``: ``mixer`` and ``circulant`` (descending), ``spectral`` a
        list with one array per rfft mode (length min(d, c))."""
        return self._spectra(self.solve(round(float(beta), 12)))

    @staticmethod
    def _spectra(fits: dict) -> dict:
        return {"mixer": fits["mixer"].singular_values()[0],
                "circulant": fits["circulant"].singular_values()[0],
                "spectral": [np.linalg.svd(R, compute_uv=False) for R in fits["spectral"].Z]}

    def figure(self, beta: float):
        """Three panels of singular values at ``beta`` (also usable as a static figure); returns
        ``(fig, info)``."""
        fits = self.solve(round(float(beta), 12))
        sp = self._spectra(fits)
        n, s, d = self.X.shape
        c = self.Y.shape[2]
        top = max(1.0, max(float(np.max(v)) if np.size(v) else 0.0 for v in
                           [sp["mixer"], sp["circulant"], *sp["spectral"]]))
        rank = {k: numerical_rank(sp[k], self.rank_rtol) for k in ("mixer", "circulant")}
        mode_ranks = [numerical_rank(v, self.rank_rtol) for v in sp["spectral"]]
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.9), sharey=True, layout="constrained")
        for ax, key, rows, what in [(axes[0], "mixer", f"{s}²", "heads"),
                                    (axes[1], "circulant", f"{s}", "kernels")]:
            name = NAMES[key]
            sv = np.maximum(sp[key], FLOOR * top)
            ax.semilogy(np.arange(1, len(sv) + 1), sv, "o-")
            ax.set(title=f"{name}:\nZ ({rows} × {d * c}), rank {rank[key]} = {what}",
                   xlabel="index i (largest first)", xticks=np.arange(1, len(sv) + 1))
        axes[0].set_ylabel("singular value σ_i (a.u.)")
        threshold = self.rank_rtol * top
        for w, v in enumerate(sp["spectral"]):
            on = v > threshold
            v = np.maximum(v, FLOOR * top)
            axes[2].semilogy(np.full(on.sum(), w), v[on], "o", color="tab:green")
            axes[2].semilogy(np.full((~on).sum(), w), v[~on], "o", color="tab:gray")
        K = len(mode_ranks)
        axes[2].set(title=f"{NAMES['spectral']}:\nR_w ({d} × {c}); {sum(r > 0 for r in mode_ranks)}/{K} "
                          f"modes on, max rank {max(mode_ranks)}",
                    xlabel="rfft mode w (cycles per sequence)", xticks=np.arange(K))
        for ax in axes:
            ax.axhline(self.rank_rtol * top, color="k", lw=0.8, ls=":")
            ax.set_ylim(FLOOR * top / 3, top * 3)
        fig.suptitle(f"singular values of the lifted matrices at β = {beta:.3g} "
                     "(dotted: rank threshold; gray: below it, switched off)")
        info = {"mixer_value": fits["mixer"].value, "circulant_value": fits["circulant"].value,
                "spectral_value": fits["spectral"].value, "mixer_rank": rank["mixer"],
                "circulant_rank": rank["circulant"],
                "spectral_modes": int(sum(r > 0 for r in mode_ranks)),
                "spectral_rank": int(max(mode_ranks)),
                "rel_gap": max(abs(fits[k].certificate()["rel_gap"]) for k in NAMES),
                "rel_gaps": {k: fits[k].certificate()["rel_gap"] for k in NAMES},
                "rank_threshold": threshold,
                "retried": fits["retried"]}
        return fig, info

    def status_html(self, info: dict) -> str:
        return (f"<b>β = {info['beta']:.3g}</b> · {NAMES['mixer']}: p* = {info['mixer_value']:.5g}, "
                f"{info['mixer_rank']} heads · {NAMES['circulant']}: p* = {info['circulant_value']:.5g}, "
                f"{info['circulant_rank']} kernels · {NAMES['spectral']}: "
                f"p* = {info['spectral_value']:.5g}, "
                f"{info['spectral_modes']} modes on, rank ≤ {info['spectral_rank']} · "
                f"certified gap ≤ {info['rel_gap']:.1e}")


def mixer_beta_explorer(X, Y, beta: float = 0.1, **kwargs) -> MixerExplorer:
    """Build the β explorer of the three token-mixing programs (bilinear mixing, circular
    convolution, two-layer per-mode map) for token data X (n, s, d), targets Y (n, s, c)."""
    return MixerExplorer(X, Y, beta=beta, **kwargs)
