"""Non-convex models in torch and their training, the baselines the convex programs must match."""

from __future__ import annotations

import numpy as np

from ..validation import as_float_array, choice, positive_int, positive_scalar, targets
from .mlp import ACTIVATIONS, TwoLayerNet, repeat_gates
from .training import (OPTIMIZERS, TrainRun, evaluate, fit_adam_batched, fit_lbfgs, objective,
                       penalty, train_restarts)

__all__ = ["TwoLayerNet", "repeat_gates", "OPTIMIZERS", "TrainRun", "evaluate", "fit_adam_batched",
           "fit_lbfgs", "objective", "penalty", "train_restarts", "train_mlp", "mlp_objective"]


def train_mlp(X, Y, beta, activation: str = "relu", m: int = 16, gates=None,
              restarts: int = 20, seed: int = 0, loss: str = "squared", optimizer="lbfgs",
              max_iter: int = 2000, lr=None, init_scale: float = 1.0, device=None,
              progress: bool = True, polish_iter: int = 500) -> list[TrainRun]:
    """Train the two-layer network of :mod:`.mlp` with ``restarts`` random initialisations.

    ``gates`` (d, m) fixes the gate of each neuron for ``activation='gated_relu'``.
    Returns the list of :class:`TrainRun` (objective in the project's sum-over-samples convention).
    """
    X = as_float_array("X", X, 2)
    choice("activation", activation, ACTIVATIONS)
    beta = positive_scalar("beta", beta)
    Y, c = targets(Y, X.shape[0], loss)
    m = positive_int("m", m) if gates is None else np.asarray(gates).shape[1]
    d = X.shape[1]

    def make(gen):
        return TwoLayerNet(d, m, c, activation, gates=gates, init_scale=init_scale, generator=gen)

    return train_restarts(make, X, Y, beta, loss=loss, restarts=restarts, seed=seed,
                          optimizer=optimizer, max_iter=max_iter, lr=lr, device=device,
                          progress=progress, polish_iter=polish_iter)


def mlp_objective(weights: dict, X, Y, beta, activation: str, loss: str = "squared") -> float:
    """The regularised objective of the network with these ``weights`` (float64)."""
    X = as_float_array("X", X, 2)
    Y, _ = targets(Y, X.shape[0], loss)
    return evaluate(TwoLayerNet.from_weights(weights, activation), X, Y, beta, loss)
