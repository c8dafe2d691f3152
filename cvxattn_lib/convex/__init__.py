"""Convex programs equivalent to non-convex networks with weight decay, solved with CVXPY."""

from .mlp import MLPFit, MLPProgram, fit_mlp

__all__ = ["MLPFit", "MLPProgram", "fit_mlp"]
