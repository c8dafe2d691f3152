"""Torch solvers for the convex heads, on CPU or CUDA, with float64 global-optimality certificates.

``cal.solvers.fit_head(kind, X, Y, beta, method="fista" | "burer_monteiro", device=None, ...)``
returns a :class:`HeadFit` (``value``, ``lower_bound``, ``rel_gap``, ``weights()``, ``Z``).
Heads live in :mod:`.heads` and register themselves in :data:`HEADS`.
"""

from .api import DTYPES, METHODS, HeadFit, fit_head
from .burer_monteiro import burer_monteiro
from .certify import DualNorm, compact_svd, evaluate, spectral_norms
from .fista import fista, svt
from .heads import (HEADS, AttentionHead, ConvexHead, FNOTorchHead, MixerTorchHead, MLPHead,
                    register_head)

__all__ = ["DTYPES", "METHODS", "HeadFit", "fit_head", "burer_monteiro", "DualNorm", "compact_svd",
           "evaluate", "spectral_norms", "fista", "svt", "HEADS", "AttentionHead", "ConvexHead",
           "MLPHead", "MixerTorchHead", "FNOTorchHead", "register_head"]
