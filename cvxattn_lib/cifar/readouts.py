r"""How a token head's per-token outputs become logits, and what mean pooling does to the mixing heads.

**The collapse (derived in this collection).**  The circulant FNO head maps tokens
:math:`X\in\mathbb{R}^{s\times d}` to per-token outputs :math:`f(X)_t=\sum_\tau X_{(t-\tau)\bmod s}K_\tau`
(a circular convolution, kernel :math:`K_\tau\in\mathbb{R}^{d\times c}`; the lifted matrix Z of
``cal.solvers.fit_head("fno", ...)`` is K reshaped to (s, d c)).  Circular shifts do not change a
token mean, so with mean-pooled logits

.. math:: \tfrac1s\sum_t f(X)_t = \sum_\tau \Big(\tfrac1s\sum_t X_{t-\tau}\Big)K_\tau = \bar x\,W,
   \qquad W=\textstyle\sum_\tau K_\tau ,

a linear model on the token mean :math:`\bar x`.  The regulariser collapses too: for every K with
:math:`\sum_\tau K_\tau=W` (i.e. :math:`\mathbf 1^\top K=w^\top`, w = vec W),
:math:`\|K\|_*\ge\|K\|_2\ge\|\mathbf 1^\top K\|_2/\|\mathbf 1\|_2=\|W\|_F/\sqrt s`, with equality
only at the constant kernel :math:`K=\mathbf 1w^\top/s` (rank one).  Hence

.. math:: \min_K L(\text{mean-pooled }f)+\beta\|K\|_* \;=\; \min_W L(\bar XW)+\tfrac{\beta}{\sqrt s}\|W\|_F ,

the token-mean linear model with a (non-squared) Frobenius penalty; its minimiser :math:`W^\star\ne0`
is also the minimiser of the ``linear`` head's program :math:`L(\bar XW)+\tfrac{\beta_{lin}}2\|W\|_F^2`
at :math:`\beta_{lin}=\beta/(\sqrt s\,\|W^\star\|_F)` (the two stationarity conditions coincide), whose
optimal value is the FNO optimum minus :math:`\tfrac{\beta}{2\sqrt s}\|W^\star\|_F`.  The spectral
FNO head collapses too: only the zero-frequency mode reaches a token mean, so its
mean-pooled logits are :math:`\bar x R_0` and, the other modes being zero at the optimum, it is the
token-mean linear model with the nuclear-norm penalty :math:`\beta\|R_0\|_*`.

**A readout under which mixing can matter.**  :data:`READOUTS`: ``"mean"`` (the default, above) or
``"token"``: the logits are the outputs of one designated token (token 0, as a class token), a
fixed linear map of the per-token outputs.  The head's outputs stay linear in Z, so the program
(cross-entropy of a linear map of Z plus nuclear norms) stays convex and its Fenchel certificate, which
needs only the map and its adjoint (taken by autograd from the same forward), stays valid.  Under it
the circulant head is :math:`\sum_u X_uK_{-u}`: a linear model on the *flattened* tokens with the
nuclear norm of the (s, d c) weight as regulariser, so it sees positions.  Any fixed linear readout
keeps the linear mixing heads (``mixer``, ``fno``, ``fno_spectral``) linear in the flattened tokens:
only the gated heads are non-linear in X, so beyond position the ``linear_flat`` head is the baseline
that tells whether mixing itself helps.  (Pooling per-token log-probabilities instead does not help:
:math:`\arg\max_b\sum_t\log\mathrm{softmax}(f_t)_b=\arg\max_b\sum_t f_{t,b}`, the mean readout's
prediction.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..solvers.heads import FNOTorchHead, MixerTorchHead, register_head

#: readouts of the token-mixing heads: mean-pooled logits, or the logits of token 0
READOUTS = ("mean", "token")
#: solver kinds with a readout other than the mean: (kind, readout) -> registered kind
READOUT_KINDS: dict[tuple[str, str], str] = {}


class _TokenReadout:
    """Mixin: logits are the outputs of token 0 (cross-entropy only: token targets of the squared
    loss are per token already)."""

    readout = "token"

    @classmethod
    def build(cls, *args, **kwargs):  # the parent's arguments, whatever they are
        head = super().build(*args, **kwargs)
        if head.loss != "cross_entropy":
            raise ValueError("readout='token' is for loss='cross_entropy' (the squared loss already "
                             "fits every token's output)")
        return head

    def _out(self, out):
        return out[:, 0]


@register_head("mixer_token")
class MixerTokenReadout(_TokenReadout, MixerTorchHead):
    """:class:`~cvxattn_lib.solvers.MixerTorchHead` whose logits are token 0's outputs."""


@register_head("fno_token")
class FNOTokenReadout(_TokenReadout, FNOTorchHead):
    """:class:`~cvxattn_lib.solvers.FNOTorchHead` whose logits are token 0's outputs."""


READOUT_KINDS.update({("mixer", "token"): "mixer_token", ("fno", "token"): "fno_token"})


def readout_kind(kind: str, readout: str) -> str:
    """The ``fit_head`` kind of solver ``kind`` with ``readout`` (``kind`` itself for ``'mean'``)."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {', '.join(map(repr, READOUTS))}; got {readout!r}")
    if readout == "mean":
        return kind
    if (kind, readout) not in READOUT_KINDS:
        raise ValueError(f"readout={readout!r} is for the token-mixing heads (solver kinds "
                         f"{', '.join(sorted({k for k, _ in READOUT_KINDS}))}), not {kind!r}")
    return READOUT_KINDS[(kind, readout)]


def head_logits(fit, X) -> np.ndarray:
    """Logits (n, c) of a fitted token-mixing head (any readout) on new tokens X (n, s, d): the
    fitted head's own forward map with its Z (or factors) and gates, on X; float64."""
    head = fit.head
    X = np.asarray(X, dtype=np.float64)
    new = type(head)(X, np.zeros(X.shape[0], dtype=np.int64), head.G, head.activation, head.loss,
                     head.c, head.Xt.device, torch.float64)
    if fit._Z is not None:
        out = new.predict(fit._Z.to(new.zdtype()))
    else:
        out = new.predict(None, factors=tuple(f.to(new.zdtype()) for f in fit._factors))
    return out.real.cpu().numpy() if out.is_complex() else out.cpu().numpy()


def circulant_kernel(fit) -> np.ndarray:
    """The kernel K (s, d, c) of a circulant FNO fit (its lifted Z reshaped)."""
    if fit.kind not in ("fno", "fno_token") or fit.activation != "circulant":
        raise ValueError(f"circulant_kernel needs a circulant FNO fit, got kind={fit.kind!r}, "
                         f"activation={fit.activation!r}")
    head = fit.head
    return np.asarray(fit.Z[0]).reshape(head.s, head.d, head.c)


def collapsed_linear(fit) -> np.ndarray:
    r"""W = :math:`\sum_\tau K_\tau` (d, c): the linear map of the token mean that a mean-pooled
    circulant FNO fit computes (its logits are exactly :math:`\bar X W`)."""
    if fit.kind != "fno":
        raise ValueError(f"the collapse is a property of the mean readout (kind 'fno'), got {fit.kind!r}")
    return circulant_kernel(fit).sum(axis=0)


def group_penalty_objective(Xbar, y, W, beta: float, s: int) -> float:
    r""":math:`\sum_i\mathrm{CE}(\bar x_iW, y_i)+\tfrac{\beta}{\sqrt s}\|W\|_F` (float64): the program a
    mean-pooled circulant FNO head at ``beta`` on s tokens is equal to."""
    from ..losses import torch_loss

    logits = torch.as_tensor(np.asarray(Xbar, dtype=np.float64) @ np.asarray(W, dtype=np.float64))
    ce = float(torch_loss(logits, torch.as_tensor(np.asarray(y, dtype=np.int64)), "cross_entropy"))
    return float(ce + beta / np.sqrt(s) * float(np.linalg.norm(W)))


def equivalent_linear_beta(W, beta: float, s: int) -> float:
    r""":math:`\beta_{lin}=\beta/(\sqrt s\,\|W\|_F)`: the weight decay at which the ``linear`` head
    (penalty :math:`\tfrac{\beta_{lin}}2\|W\|_F^2`) has the same minimiser W as the mean-pooled
    circulant FNO head at ``beta`` (W non-zero)."""
    norm = float(np.linalg.norm(W))
    if norm == 0.0:
        raise ValueError("W is zero: the FNO head is at its trivial solution (beta >= its beta_max), "
                         "matched by any beta_lin large enough")
    return float(beta / (np.sqrt(s) * norm))


@dataclass
class Collapse:
    """What :func:`fno_collapse` measures (float64; all objectives in the sum convention)."""

    beta: float
    tokens: int
    fno_value: float  # the circulant head's objective at its fit
    fno_lower_bound: float  # its certified lower bound
    logits_max_diff: float  # max |FNO logits - x_bar W| over the training set, relative to max |logits|
    kernel_singular_values: np.ndarray  # of K (s, d c): one non-zero (the constant kernel 1 w^T / s)
    group_value: float  # CE(x_bar W) + beta / sqrt(s) ||W||_F at the FNO's W (<= fno_value)
    W_norm: float  # ||W||_F of the FNO's W = sum_tau K_tau
    beta_lin: float  # beta / (sqrt(s) ||W||_F): the linear head's matching weight decay
    linear_value: float  # the linear head's objective at its own fit (L-BFGS) at beta_lin
    linear_lower_bound: float  # its certified lower bound
    W_max_diff: float  # max |W_linear - W_fno|, relative to max |W_fno|
    predictions_agree: float  # fraction of training samples with the same argmax under the two heads
    test_predictions_agree: float | None = None  # the same on X_test (the FNO's test logits from its
    # own forward map, not from W), None without X_test


def fno_collapse(X, y, beta: float, X_test=None, device="cpu", tol: float = 1e-10,
                 max_iter: int = 20000) -> Collapse:
    r"""Fit the mean-pooled circulant FNO head at ``beta`` on tokens X (n, s, d), labels y, and the
    ``linear`` head on the token mean at the matching :math:`\beta_{lin}` (:func:`equivalent_linear_beta`),
    and measure the collapse of the module docstring: equal logits, a constant kernel, equal optima
    (``fno_value - beta/(2 sqrt s) W_norm`` against ``linear_value``, both certified), the same W and
    the same predictions (on ``X_test`` too when given).  For notebooks: small problems (FISTA to
    ``tol``, L-BFGS), float64."""
    from .. import solvers
    from ..nonconvex.training import fit_lbfgs
    from ..validation import positive_scalar
    from .heads import LinearHead, linear_gap

    beta = positive_scalar("beta", beta)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"X must be tokens (n, s, d), got shape {X.shape}")
    y = np.asarray(y)
    fit = solvers.fit_head("fno", X, y, beta, loss="cross_entropy", device=device, tol=tol,
                           max_iter=max_iter, progress=False)
    s = X.shape[1]
    W = collapsed_linear(fit)
    Xbar = X.mean(1)
    logits = fit.prediction()
    K = circulant_kernel(fit).reshape(s, -1)
    beta_lin = equivalent_linear_beta(W, beta, s)
    model = LinearHead(X.shape[2], W.shape[1])
    Xt, yt = torch.as_tensor(Xbar), torch.as_tensor(y.astype(np.int64))
    fit_lbfgs(model, Xt, yt, beta_lin, "cross_entropy", tol=1e-15)
    W_lin = model.W.detach().numpy()
    with torch.no_grad():
        lin_logits = model(Xt)
        P = torch.softmax(lin_logits, 1).numpy()
    lin_value = float(torch.nn.functional.cross_entropy(lin_logits, yt, reduction="sum")) \
        + beta_lin / 2 * float(np.sum(W_lin ** 2))
    _, lin_lower = linear_gap(P, y, Xbar, beta_lin, lin_value)
    scale = max(float(np.abs(logits).max()), 1e-300)
    test_agree = None
    if X_test is not None:
        X_test = np.asarray(X_test, dtype=np.float64)
        if X_test.ndim != 3 or X_test.shape[1:] != X.shape[1:]:
            raise ValueError(f"X_test must be tokens (n, {X.shape[1]}, {X.shape[2]}) like X, got shape "
                             f"{X_test.shape}")
        fno_test = head_logits(fit, X_test)
        test_agree = float(np.mean(fno_test.argmax(1) == (X_test.mean(1) @ W_lin).argmax(1)))
    return Collapse(beta=beta, tokens=s, fno_value=fit.value, fno_lower_bound=fit.lower_bound,
                    logits_max_diff=float(np.abs(Xbar @ W - logits).max()) / scale,
                    kernel_singular_values=np.linalg.svd(K, compute_uv=False),
                    group_value=group_penalty_objective(Xbar, y, W, beta, s),
                    W_norm=float(np.linalg.norm(W)), beta_lin=beta_lin,
                    linear_value=float(lin_value), linear_lower_bound=float(lin_lower),
                    W_max_diff=float(np.abs(W_lin - W).max() / max(np.abs(W).max(), 1e-300)),
                    predictions_agree=float(np.mean(lin_logits.numpy().argmax(1) == logits.argmax(1))),
                    test_predictions_agree=test_agree)
