"""Non-convex models in torch and their training, the baselines the convex programs must match."""

from __future__ import annotations

from ..validation import (as_float_array, choice, positive_int, positive_scalar, seed_value,
                          targets, token_targets)
from .attention import ATTENTION_KINDS, MultiHeadAttention
from .mixer import FNOHead, MixerHead, fno_objective, mixer_objective, train_fno, train_mixer
from .mlp import ACTIVATIONS, TwoLayerNet, repeat_gates
from .training import (OPTIMIZERS, TrainRun, as_tensors, evaluate, fit_adam_batched, fit_lbfgs,
                       objective, penalty, train_restarts)

__all__ = ["TwoLayerNet", "repeat_gates", "OPTIMIZERS", "TrainRun", "evaluate", "fit_adam_batched",
           "fit_lbfgs", "objective", "penalty", "train_restarts", "train_mlp", "mlp_objective",
           "ATTENTION_KINDS", "MultiHeadAttention", "train_attention", "attention_objective",
           "relu_from_gated", "MixerHead", "FNOHead", "train_mixer", "train_fno",
           "mixer_objective", "fno_objective"]


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
    seed = seed_value("seed", seed)
    Y, c = targets(Y, X.shape[0], loss)
    d = X.shape[1]
    if gates is not None:
        gates = as_float_array("gates", gates, 2, shape=(d, None))
    m = positive_int("m", m) if gates is None else gates.shape[1]

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


def _attention_targets(X, Y, loss):
    X = as_float_array("X", X, 3)
    Y, c = token_targets(Y, X.shape[0], X.shape[1], loss)
    return X, Y, c


def train_attention(X, Y, beta, activation: str = "linear", m: int = 4, gates=None,
                    restarts: int = 10, seed: int = 0, loss: str = "squared", optimizer="lbfgs",
                    max_iter: int = 2000, lr=None, init_scale: float = 1.0, device=None,
                    progress: bool = True, polish_iter: int = 500) -> list[TrainRun]:
    """Train the multi-head attention layer of :mod:`.attention` with ``restarts`` initialisations.

    X (n, s, d); Y (n, s, c) token targets, or labels (n,) with ``loss='cross_entropy'`` (the
    outputs are then mean-pooled over tokens).  ``gates`` (m, d, d) for ``'gated_relu'``.
    """
    X, Y, c = _attention_targets(X, Y, loss)
    choice("activation", activation, ATTENTION_KINDS)
    beta = positive_scalar("beta", beta)
    seed = seed_value("seed", seed)
    d = X.shape[2]
    if gates is not None:
        gates = as_float_array("gates", gates, 3, shape=(None, d, d))
    m = positive_int("m", m) if gates is None else gates.shape[0]

    def make(gen):
        return MultiHeadAttention(d, m, c, activation, gates=gates, pool=loss == "cross_entropy",
                                  init_scale=init_scale, generator=gen)

    return train_restarts(make, X, Y, beta, loss=loss, restarts=restarts, seed=seed,
                          optimizer=optimizer, max_iter=max_iter, lr=lr, device=device,
                          progress=progress, polish_iter=polish_iter)


def attention_objective(weights: dict, X, Y, beta, activation: str,
                        loss: str = "squared") -> float:
    """The regularised objective of the attention layer with these ``weights`` (float64)."""
    X, Y, _ = _attention_targets(X, Y, loss)
    net = MultiHeadAttention.from_weights(weights, activation, pool=loss == "cross_entropy")
    return evaluate(net, X, Y, beta, loss)


def relu_from_gated(weights: dict, X, Y, beta, loss: str = "squared",
                    polish_iter: int = 2000) -> tuple[float, TrainRun]:
    r"""The tractable route to ReLU attention: gated-ReLU heads :math:`(W_{1j}, W_{2j}, G_j)` (e.g.
    from the convex program) read as a ReLU layer, :math:`\max(XW_{1j}X^\top,0)` in place of
    :math:`1\{XG_jX^\top\ge0\}\odot XW_{1j}X^\top`, then trained on from there with L-BFGS.

    The two agree wherever the sign of each score matches its gate; elsewhere the ReLU layer
    differs.  Returns ``(objective of the ReLU layer as read, the polished run)``.
    """
    X, Y, _ = _attention_targets(X, Y, loss)
    beta = positive_scalar("beta", beta)
    relu = {"W1": weights["W1"], "W2": weights["W2"]}
    as_read = attention_objective(relu, X, Y, beta, "relu", loss)
    net = MultiHeadAttention.from_weights(relu, "relu", pool=loss == "cross_entropy")
    Xt, Yt = as_tensors(X, Y, loss)
    history = fit_lbfgs(net, Xt, Yt, beta, loss, max_iter=polish_iter)
    run = TrainRun(objective=evaluate(net, X, Y, beta, loss), weights=net.weights(),
                   history=history, seed=-1, model=net)
    return as_read, run
