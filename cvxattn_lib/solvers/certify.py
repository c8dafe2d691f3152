r"""Certificates for the torch solvers, always evaluated in float64.

For a primal point Z (or its factors U V^T) with prediction :math:`\hat U=\mathcal{A}(Z)`:

* **weak duality** (:func:`cvxattn_lib.certificates.certify`): with
  :math:`G=\nabla L(\hat U)` and :math:`s=\max_j\|\mathcal{A}_j^*(G)\|_2` (the dual norm of the sum of
  nuclear norms), :math:`tG` is dual feasible for :math:`t\le\beta/s`, so
  :math:`p^\star\ge -L^*(tG)`: a certified lower bound from any point;
* **stationary-point bound** (Burer–Monteiro): at a stationary point of
  :math:`L(\mathcal{A}(UV^\top))+\tfrac\beta2(\|U\|_F^2+\|V\|_F^2)` with value p and L >= 0,
  :math:`(p-p^\star)/p^\star\le(s/\beta-1)_+`, since :math:`\nabla_Z F=\mathcal{A}^*(G)`.

The spectral norms are exact (batched SVD of the explicit :math:`\mathcal{A}_j^*(G)`) when that
tensor has at most ``explicit_limit`` entries, else matrix-free by block power (subspace)
iteration with Rayleigh-Ritz (``block`` vectors: at the optimum the top singular values of the
dual matrix cluster at beta, where one vector converges slowly), applying
:math:`M=\mathcal{A}_j^*(G)` through the low-rank forward: with :math:`u, w` of k columns,
:math:`\nabla_u\langle G,\mathcal{A}(uw^\top)\rangle=Mw` and :math:`\nabla_w=M^\top u` (autograd),
never forming Z or M.  Power iteration approaches :math:`\|M\|_2` from below, so the matrix-free lower bound
is certified up to the iteration's relative accuracy ``power_tol`` (reported as ``power_rel_change``).
Training may run in float32/bf16: the factors are cast to float64 and the certificate recomputed
from the float64 data (the bound then holds for the float64 point, which is what is returned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..certificates import Certificate, certify
from ..losses import loss_value

EXPLICIT_LIMIT = 2**25  # entries of A*(G) (P p q) up to which the spectral norm is exact


@dataclass
class DualNorm:
    """max_j ||A_j^*(G)||_2 and how it was obtained."""

    value: float
    method: str  # "svd" or "power"
    iterations: int = 0
    rel_change: float = 0.0


def spectral_norms(head, G: torch.Tensor, batch_size=None, explicit_limit: int = EXPLICIT_LIMIT,
                   power_iter: int = 500, power_tol: float = 1e-9, block: int = 8,
                   seed: int = 0) -> DualNorm:
    r""":math:`\max_j\|\mathcal{A}_j^*(G)\|_2` for G in the rows of ``head.forward`` (see module)."""
    P, p, q = head.shape
    if P * p * q <= explicit_limit or head.complex:  # complex heads (spectral FNO) are small
        M = head.adjoint(G, batch_size)
        return DualNorm(float(torch.linalg.matrix_norm(M, ord=2).max()), "svd")
    k = min(block, p, q)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.linalg.qr(torch.randn(P, p, k, generator=gen, dtype=G.dtype))[0].to(G.device)
    w = torch.linalg.qr(torch.randn(P, q, k, generator=gen, dtype=G.dtype))[0].to(G.device)
    sigma_old, sigma, change, it = 0.0, 0.0, np.inf, 0
    while it < power_iter:
        it += 1
        u.requires_grad_(True)
        w.requires_grad_(True)
        gu = torch.zeros_like(u)
        gw = torch.zeros_like(w)
        rows = 0
        for idx in head.batches(batch_size):
            out = head.forward_factored(u, w, idx)  # A(u w^T): <G, A(u w^T)> = tr(u^T M w)
            Gb = G[rows:rows + out.shape[0]]
            rows += out.shape[0]
            a, b = torch.autograd.grad((out * Gb).sum(), (u, w))
            gu += a  # M_j w_j
            gw += b  # M_j^T u_j
        with torch.no_grad():
            # Rayleigh-Ritz: the singular values of u^T M w (orthonormal u, w) are <= those of M
            ritz = torch.linalg.matrix_norm(u.transpose(1, 2) @ gu, ord=2)
            sigma = float(ritz.max())
            u = torch.linalg.qr(gu)[0]
            w = torch.linalg.qr(gw)[0]
        change = abs(sigma - sigma_old) / max(sigma, 1e-300)
        if change <= power_tol:
            break
        sigma_old = sigma
    return DualNorm(sigma, "power", it, change)


def stationary_bound(dual_norm: float, beta: float) -> float:
    r""":math:`(s/\beta-1)_+` with :math:`s=\|\nabla_Z L(\mathcal{A}(UV^\top))\|_2` (the largest over
    gates): at a stationary point (U, V) of the factored problem with value :math:`p_{BM}` and a loss
    L >= 0, :math:`(p_{BM}-p^\star)/p^\star\le(s/\beta-1)_+` (Sahiner et al., ICLR 2024).  Proof: at a
    stationary point :math:`\langle\nabla_Z L,UV^\top\rangle=-\tfrac\beta2(\|U\|_F^2+\|V\|_F^2)`, so
    convexity of L gives :math:`F(Z)\ge p_{BM}-(s-\beta)\|Z\|_*` for every Z, and
    :math:`\beta\|Z^\star\|_*\le p^\star`."""
    if not np.isfinite(dual_norm) or dual_norm < 0:
        raise ValueError(f"dual_norm must be a finite number >= 0, got {dual_norm}")
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    return max(float(dual_norm) / float(beta) - 1.0, 0.0)


def to64(t: torch.Tensor) -> torch.Tensor:
    """float64 (complex128 for complex tensors)."""
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def compact_svd(U: torch.Tensor, V: torch.Tensor):
    """Per gate, the SVD of U_j V_j^T without forming it: QR of both factors, SVD of the r x r core.
    Returns (left (P, p, r), s (P, r), right (P, q, r)) in float64."""
    Qu, Ru = torch.linalg.qr(to64(U))
    Qv, Rv = torch.linalg.qr(to64(V))
    A, s, Bt = torch.linalg.svd(Ru @ Rv.transpose(1, 2), full_matrices=False)
    return Qu @ A, s, Qv @ Bt.transpose(1, 2)


@dataclass
class Evaluation:
    """Objective and certificate of one primal point, in float64."""

    value: float
    certificate: Certificate
    dual: DualNorm
    prediction: np.ndarray


def evaluate(head64, beta: float, Z=None, factors=None, batch_size=None, **power) -> Evaluation:
    """Objective :math:`L(\\mathcal{A}(Z))+\\beta\\sum_j\\|Z_j\\|_*` and the weak-duality certificate,
    for ``Z`` (P, p, q) or ``factors=(U, V)``, with a float64 head."""
    if factors is not None:
        U, V = (to64(f.detach().to(head64.Xt.device)) for f in factors)
        nuc = float(compact_svd(U, V)[1].sum())
        pred = head64.predict(None, batch_size, factors=(U, V))
    else:
        Z = to64(Z.detach().to(head64.Xt.device))
        nuc = float(torch.linalg.matrix_norm(Z, ord="nuc").sum())
        pred = head64.predict(Z, batch_size)
    Y = head64.Y_rows()
    P = pred.cpu().numpy()
    value = loss_value(P, Y, head64.loss) + beta * nuc
    box = {}

    def dual_norm_of(Vnp):
        box["dual"] = spectral_norms(head64, torch.as_tensor(Vnp, device=pred.device), batch_size,
                                     **power)
        return box["dual"].value

    cert = certify(value, P, Y, head64.loss, beta, dual_norm_of)
    return Evaluation(value, cert, box["dual"], P)


def zero_gradient(head64, batch_size=None) -> torch.Tensor:
    r""":math:`\nabla L(0)` in the rows of ``head64.forward`` (float64): :math:`-Y` for the squared
    loss, :math:`\tfrac1c\mathbf 1-e_y` (softmax of zero logits minus one-hot) for cross-entropy."""
    from ..losses import loss_gradient

    rows = head64.targets().shape[0]
    zero = np.zeros((rows, head64.out_columns()))
    return torch.as_tensor(loss_gradient(zero, head64.Y_rows(), head64.loss), device=head64.Xt.device)


def beta_max(head64, batch_size=None, **power) -> DualNorm:
    r"""The smallest beta at which Z = 0 is optimal: :math:`\beta_{\max}=\max_j
    \|\mathcal{A}_j^*(\nabla L(0))\|_2` (0 is optimal iff :math:`-\nabla f(0)` lies in
    :math:`\beta` times the unit ball of the dual norm, the largest spectral norm over the gates).
    Exact (batched SVD of the explicit blocks, float64) up to ``explicit_limit`` entries; beyond,
    block power iteration (``method='power'``, from below, to ``power_tol``).  The glmnet
    convention: beta given as a fraction of beta_max means the same for every head."""
    return spectral_norms(head64, zero_gradient(head64, batch_size), batch_size, **power)
