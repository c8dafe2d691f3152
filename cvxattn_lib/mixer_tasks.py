r"""Three toy token-mixing tasks, each built to favour one inductive bias, and the convex token
mixers (linear self-attention, bilinear token-and-channel mixing, circular convolution, the
two-layer per-mode channel map and the FNO layer) compared on them by held-out error (notebook 04).

* ``'clusters'``: :func:`~cvxattn_lib.clustering.planted_clusters`, targets the mean of the query's
  own cluster: the mixing depends on the *content* of the tokens (attention's bias).
* ``'positions'``: :math:`Y=MXb^\star+\varepsilon` with one fixed token-mixing matrix M (s, s) and
  channel map :math:`b^\star` (d, 1): mixing by *position*, the same for every sample (the bias of
  bilinear, Mixer-style mixing).
* ``'translation'``: :math:`Y=\mathrm{circ}(k^\star)Xb^\star+\varepsilon`, a circular convolution
  over tokens with a three-tap kernel: *translation-equivariant* mixing (the bias of the
  convolution and Fourier heads).

Samples of one task share its hidden parameters (drawn from ``seed``), so train, validation and
test splits come from one call.  Errors are relative: :math:`\|\hat Y-Y\|_F^2/\|Y\|_F^2`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .clustering import planted_clusters
from .convex.attention import AttentionFit, attention_masks, design
from .convex.fno import FNOFit, FNOLayerFit, circulant, circulant_outputs, spectral_outputs
from .convex.mixer import MixerFit, mixer_design, mixer_masks
from .validation import as_float_array, choice, positive_int, positive_scalar, seed_value

TASKS = ("clusters", "positions", "translation")
NAMES = {"attention": "linear attention", "mixer": "bilinear (Mixer-style)",
         "circulant": "circular convolution", "spectral": "two-layer per-mode (AFNO-like)",
         "fno_layer": "FNO layer (Li et al.)"}  # display names of the token mixers


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
    if not isinstance(fit, (AttentionFit, MixerFit, FNOFit, FNOLayerFit)) or fit.loss != "squared":
        raise TypeError("fit must be an AttentionFit, MixerFit, FNOFit or FNOLayerFit of the squared "
                        f"loss, got {type(fit).__name__}")
    if fit.shape[1:3] != (s, d):
        raise ValueError(f"X must have {fit.shape[1]} tokens and {fit.shape[2]} channels like the "
                         f"training data, got shape {X.shape}")
    if isinstance(fit, FNOLayerFit):
        return spectral_outputs(X, fit.R).reshape(n, s, -1)
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


def quiet_solve(fit_fn, *args, **kwargs):
    """Call ``fit_fn(*args, **kwargs)`` and return ``(fit, retried)``: ``retried`` is True when a
    first solve ended ``optimal_inaccurate`` (CVXPY warns "Solution may be inaccurate") so that
    :func:`cvxattn_lib.cvxpy_solve.solve` re-ran it at other settings.  That warning is recorded
    here instead of shown (the fit's certificate says how close to the optimum the final solution
    is); every other warning is shown as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_fn(*args, **kwargs)
    retried = False
    for w in caught:
        if "Solution may be inaccurate" in str(w.message):
            retried = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return fit, retried


def select_and_score(fit_fn, task: TokenTask, betas) -> dict:
    """Fit ``fit_fn(X, Y, beta)`` on the training split for every ``beta`` in ``betas``, keep the
    one with the smallest relative error on the validation split, and score it.  Returns
    ``{'beta', 'val', 'train', 'test'}`` (relative errors, see :func:`relative_error`) and
    ``'retried'``, how many of the fits were re-solved after an inaccurate first solve
    (:func:`quiet_solve`)."""
    betas = [positive_scalar("betas", b) for b in np.atleast_1d(np.asarray(betas, float))]
    if not betas:
        raise ValueError("betas must hold at least one weight decay")
    best, retried = None, 0
    for b in betas:
        fit, again = quiet_solve(fit_fn, task.Xtr, task.Ytr, b)
        retried += again
        val = relative_error(predict(fit, task.Xval), task.Yval)
        if best is None or val < best[0]:
            best = (val, b, fit)
    val, b, fit = best
    return {"beta": b, "val": val, "train": relative_error(predict(fit, task.Xtr), task.Ytr),
            "test": relative_error(predict(fit, task.Xte), task.Yte), "retried": retried}
