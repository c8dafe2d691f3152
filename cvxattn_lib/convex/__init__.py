"""Convex programs equivalent to non-convex networks with weight decay, solved with CVXPY."""

from .attention import AttentionFit, fit_self_attention
from .fno import FNOFit, fit_fno
from .mixer import MixerFit, fit_mixer
from .mlp import MLPFit, MLPProgram, fit_mlp

__all__ = ["AttentionFit", "fit_self_attention", "MLPFit", "MLPProgram", "fit_mlp", "MixerFit",
           "fit_mixer", "FNOFit", "fit_fno"]
