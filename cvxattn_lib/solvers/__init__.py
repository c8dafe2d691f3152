"""Torch solvers for the convex heads, on CPU or CUDA, with float64 global-optimality certificates.

``cal.solvers.fit_head(kind, X, Y, beta, method="fista" | "burer_monteiro", device=None, ...)``
returns a :class:`HeadFit` (``value``, ``lower_bound``, ``rel_gap``, ``weights()``, ``Z``);
:func:`beta_max` (the smallest beta with Z = 0 optimal) and :func:`fit_head_fraction` (beta as a
fraction of it, recorded in the result).
Heads live in :mod:`.heads` and register themselves in :data:`HEADS`.  Notebook 06's pieces:
:func:`svt` (the prox of the nuclear norm), :func:`fista_step` (plain FISTA),
:func:`stationary_bound` (Burer–Monteiro), :func:`time_to_certified_gap`,
:func:`seconds_per_iteration` (:mod:`.scaling`).  :func:`regularisation_path` (:mod:`.paths`): certified
optima over a beta grid, warm-started from large beta down (what the notebooks' sliders show).
"""

from .api import DTYPES, METHODS, HeadFit, beta_max, fit_head, fit_head_fraction
from .burer_monteiro import burer_monteiro
from .certify import DualNorm, compact_svd, evaluate, spectral_norms, stationary_bound
from .fista import fista, spectral_upper, svt, svt_gram, svt_subspace, top_eigh
from .paths import RegularisationPath, log_grid, regularisation_path
from .heads import (HEADS, AttentionHead, ConvexHead, FNOTorchHead, MixerTorchHead, MLPHead,
                    register_head)
from .scaling import GapTiming, fista_step, seconds_per_iteration, time_to_certified_gap

__all__ = ["DTYPES", "METHODS", "HeadFit", "fit_head", "fit_head_fraction", "beta_max",
           "svt_gram", "svt_subspace", "top_eigh", "spectral_upper", "burer_monteiro", "DualNorm",
           "compact_svd",
           "evaluate", "spectral_norms", "fista", "svt", "HEADS", "AttentionHead", "ConvexHead",
           "MLPHead", "MixerTorchHead", "FNOTorchHead", "register_head",
           "stationary_bound", "fista_step", "GapTiming", "time_to_certified_gap",
           "seconds_per_iteration", "regularisation_path", "RegularisationPath", "log_grid"]
