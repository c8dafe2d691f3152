r"""Three toy token-mixing tasks, each built to favour one inductive bias, and the convex token
mixers (self-attention, Mixer, FNO) compared on them by held-out error (notebook 04).

* ``'clusters'``: :func:`~cvxattn_lib.clustering.planted_clusters`, targets the mean of the query's
  own cluster: the mixing depends on the *content* of the tokens (attention's bias).
* ``'positions'``: :math:`Y=MXB^\star+\varepsilon` with one fixed token-mixing matrix M (s, s) and
  channel map :math:`B^\star` (d, c): mixing by *position*, the same for every sample (Mixer's bias).
* ``'translation'``: :math:`Y=\mathrm{circ}(k^\star)XB^\star+\varepsilon`, a circular convolution
  over tokens with a short kernel: *translation-equivariant* mixing (FNO's bias).

Samples of one task share its hidden parameters (drawn from ``seed``), so train, validation and
test splits come from one call.  Errors are relative: :math:`\|\hat Y-Y\|_F^2/\|Y\|_F^2`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clustering import planted_clusters
from .convex.attention import AttentionFit, attention_masks, design
from .convex.fno import FNOFit, circulant, circulant_outputs, spectral_outputs
from .convex.mixer import MixerFit, mixer_design, mixer_masks
from .validation import as_float_array, choice, positive_int, positive_scalar, seed_value

TASKS = ("clusters", "positions", "translation")


@dataclass
class TokenTask:
    """A task's splits: ``X*`` (n, s, d), ``Y*`` (n, s, c) for train, val(idation) and test."""

    kind: str
    Xtr: np.ndarray
    Ytr: np.ndarray
    Xval: np.ndarray
    Yval: np.ndarray
    Xte: np.ndarray
    Yte: np.ndarray


def token_task(kind: str, n_train: int = 12, n_val: int = 12, n_test: int = 48, s: int = 6,
               d: int = 2, noise: float = 0.05, seed: int = 0) -> TokenTask:
    """Draw ``n_train + n_val + n_test`` samples of task ``kind`` (see the module docstring) and
    split them.  Targets have c = d channels; ``noise`` is the standard deviation of the target
    noise (``'positions'``, ``'translation'``) or of the tokens around their centres
    (``'clusters'``, K = 3 clusters)."""
    kind = choice("kind", kind, TASKS)
    sizes = [positive_int(k, v) for k, v in [("n_train", n_train), ("n_val", n_val),
                                             ("n_test", n_test)]]
    s, d = positive_int("s", s), positive_int("d", d)
    noise = positive_scalar("noise", noise)
    seed = seed_value("seed", seed)
    n = sum(sizes)
    rng = np.random.default_rng(seed)
    if kind == "clusters":
        # channels: two of content (planted clusters), a constant 1, then values random per token;
        # target: the mean of the first value channel over the query's own cluster
        C, _, clusters = planted_clusters(n=n, s=s, d=2, K=3, noise=noise, seed=seed)
        V = rng.standard_normal((n, s, d - 3))
        X = np.concatenate([C, np.ones((n, s, 1)), V], axis=2)
        same = (clusters[:, :, None] == clusters[:, None, :]).astype(float)
        Y = np.einsum("ntu,nua->nta", same / same.sum(axis=2, keepdims=True), V)[..., :1]
    else:
        b = rng.standard_normal((d, 1)) / np.sqrt(d)
        if kind == "positions":
            M = rng.standard_normal((s, s)) / np.sqrt(s)
        else:
            k = np.zeros(s)
            k[:3] = rng.standard_normal(3) / np.sqrt(3)  # a three-tap kernel
            M = circulant(k)
        X = rng.standard_normal((n, s, d))
        Y = np.einsum("tu,nua,ab->ntb", M, X, b) + noise * rng.standard_normal((n, s, 1))
    a, b = sizes[0], sizes[0] + sizes[1]
    return TokenTask(kind, X[:a], Y[:a], X[a:b], Y[a:b], X[b:], Y[b:])


def predict(fit, X) -> np.ndarray:
    """Token outputs (n, s, c) of a convex token-mixing fit (squared loss) on new samples X:
    the fit's linear map :math:`\\sum_j\\mathcal{A}_j(Z_j)` with the designs (and, for gated ReLU,
    the masks of its gates) rebuilt on X."""
    X = as_float_array("X", X, 3)
    n, s, d = X.shape
    if not isinstance(fit, (AttentionFit, MixerFit, FNOFit)) or fit.loss != "squared":
        raise TypeError("fit must be an AttentionFit, MixerFit or FNOFit of the squared loss, "
                        f"got {type(fit).__name__}")
    if fit.shape[1:3] != (s, d):
        raise ValueError(f"X must have {fit.shape[1]} tokens and {fit.shape[2]} channels like the "
                         f"training data, got shape {X.shape}")
    if isinstance(fit, FNOFit):
        out = circulant_outputs(X, fit.Z[0]) if fit.mixing == "circulant" else spectral_outputs(X, fit.Z)
        return out.reshape(n, s, -1)
    gated = fit.activation == "gated_relu"
    if isinstance(fit, AttentionFit):
        designs = [design(X, M) for M in attention_masks(X, fit.gates)] if gated else [design(X, None)]
    else:
        designs = [mixer_design(X, M) for M in mixer_masks(X, fit.gates)] if gated else \
            [mixer_design(X, None)]
    out = sum(D @ Zj.reshape(D.shape[1], -1) for D, Zj in zip(designs, fit.Z))
    return out.reshape(n, s, -1)


def relative_error(Yhat, Y) -> float:
    """||Yhat - Y||_F^2 / ||Y||_F^2."""
    Y = np.asarray(Y, float)
    return float(np.sum((np.asarray(Yhat, float).reshape(Y.shape) - Y) ** 2) / np.sum(Y**2))
