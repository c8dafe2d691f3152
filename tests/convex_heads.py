"""Helpers shared by the solver tests: the CVXPY program of a head, and its torch head."""

import torch

import cvxattn_lib as cal


def convex_fit(kind, X, Y, beta, activation, loss, n_gates):
    """The CVXPY fit of head ``kind`` (the reference optimum the torch solvers must reach)."""
    if kind == "self_attention":
        return cal.convex.fit_self_attention(X, Y, beta, activation=activation, n_gates=n_gates,
                                             loss=loss)
    if kind == "mixer":
        return cal.convex.fit_mixer(X, Y, beta, activation=activation, n_gates=n_gates, loss=loss)
    if kind == "fno":
        return cal.convex.fit_fno(X, Y, beta, mixing=activation, loss=loss)
    return cal.convex.fit_mlp(X, Y, beta, activation=activation, n_gates=n_gates, loss=loss)


def build(kind, X, Y, activation, loss, n_gates):
    """The torch head of ``kind`` on the CPU in float64, gates drawn from seed 0."""
    return cal.solvers.HEADS[kind].build(X, Y, activation, None, n_gates, 0, loss, "cpu",
                                         torch.float64)
