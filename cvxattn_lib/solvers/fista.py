r"""Accelerated proximal gradient (FISTA) for :math:`\min_Z f(Z)+\beta\sum_j\|Z_j\|_*`, full batch.

* :math:`f(Z)=L(\mathcal{A}(Z))`, its gradient :math:`\mathcal{A}^*(\nabla L)` by autograd;
* prox of :math:`\tau\|\cdot\|_*` = singular-value soft-thresholding,
  :math:`\operatorname{prox}(Z)=U\max(S-\tau,0)V^\top` (batched SVD over the gates);
* step size :math:`1/L_k` by backtracking (double :math:`L_k` until
  :math:`f(Z^+)\le f(Y)+\langle\nabla f(Y),Z^+-Y\rangle+\tfrac{L_k}2\|Z^+-Y\|^2`), and a gentle
  decrease (``L_k *= shrink``) each iteration so the step follows the local curvature;
* adaptive restart (O'Donoghue & Candès 2015): momentum is reset when
  :math:`\langle Y-Z^+,Z^+-Z\rangle>0`;
* stopping: every ``check_every`` iterations the float64 weak-duality certificate of
  :mod:`.certify`; stop when its relative gap is at most ``tol`` (so the returned value is within
  ``tol`` of the optimum, relatively, for certain).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch
from tqdm.auto import tqdm

from . import certify as cert


@contextmanager
def one_thread(on: bool):
    """Run small CPU linear algebra on one thread: threading costs 30x more than the arithmetic for
    a 64 x 80 SVD or a 512 x 512 product on a busy 2-core machine (70 ms against 2 ms)."""
    before = torch.get_num_threads()
    if on:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if on:
            torch.set_num_threads(before)


def svt(Z, tau: float):
    r"""Singular-value soft-thresholding at ``tau``: :math:`U\max(S-\tau,0)V^\top`, the prox of
    :math:`\tau\|\cdot\|_*`, of each Z_j of a (P, p, q) tensor.  A numpy array (one (p, q) matrix
    or a (P, p, q) stack) gives a numpy array back (computed in float64)."""
    if isinstance(Z, np.ndarray):
        if Z.ndim not in (2, 3):
            raise ValueError(f"Z must be a (p, q) matrix or a (P, p, q) stack, got shape {Z.shape}")
        if not np.isfinite(tau) or tau < 0:
            raise ValueError(f"tau must be a finite number >= 0, got {tau}")
        Zt = torch.as_tensor(np.asarray(Z, dtype=np.float64))
        out = svt(Zt if Z.ndim == 3 else Zt[None], float(tau))
        return out.numpy() if Z.ndim == 3 else out[0].numpy()
    with one_thread(Z.device.type == "cpu" and Z[0].numel() <= 2**16):
        U, s, Vh = torch.linalg.svd(Z, full_matrices=False)
    return (U * torch.clamp(s - tau, min=0.0)[:, None, :]) @ Vh


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """Real inner product Re sum conj(a) b (the one autograd's complex gradients use)."""
    return float((a.conj() * b).real.sum()) if a.is_complex() else float((a * b).sum())


class _Autograd:
    """f = L(A(Z)) and its gradient by autograd over sample batches (any loss)."""

    quadratic = False

    def __init__(self, head, batch_size):
        self.head, self.batch_size = head, batch_size

    def f(self, W):
        h = self.head
        with torch.no_grad():
            return sum(float(h.loss_of(h.forward(W, i), i)) for i in h.batches(self.batch_size))

    def f_grad(self, W):
        h = self.head
        W = W.detach().requires_grad_(True)
        total, g = 0.0, torch.zeros_like(W)
        for i in h.batches(self.batch_size):
            fb = h.loss_of(h.forward(W, i), i)
            (gb,) = torch.autograd.grad(fb, W)
            g += gb
            total += float(fb.detach())
        return total, g


class _Quadratic:
    r"""Squared loss through the Gram blocks: :math:`f=\tfrac12\langle Z,HZ\rangle-\langle b,Z\rangle
    +\tfrac12\|Y\|^2`, gradient :math:`HZ-b`; per iteration O((P m)^2 c), independent of n.
    The sufficient-decrease test is exact: :math:`\langle D,HD\rangle\le L\|D\|^2`."""

    quadratic = True

    def __init__(self, head, batch_size):
        H, self.b, self.yy = head.gram(batch_size)
        P, p, q = head.shape
        self.shape, self.c = head.shape, head.targets(slice(0, 1)).shape[-1]
        self.m = p * q // self.c
        self.H2 = H.permute(0, 2, 1, 3).reshape(P * self.m, P * self.m)  # one (P m, P m) matrix

    def _HZ(self, W):
        return (self.H2 @ W.reshape(-1, self.c)).reshape(self.shape), None

    def f_grad(self, W):
        HZ, _ = self._HZ(W)
        b = self.b.reshape(self.shape)
        return float(0.5 * (W * HZ).sum() - (b * W).sum() + 0.5 * self.yy), HZ - b

    def f(self, W):
        return self.f_grad(W)[0]

    def curvature(self, D):
        return float((D * self._HZ(D)[0]).sum())

    def rel_gap(self, W, g, beta):
        """The weak-duality gap of :mod:`.certify` from Gram quantities (squared loss):
        G = A(Z) - Y, ||G||^2 = 2 f, <G, Y> = <b, Z> - ||Y||^2, s = max_j ||grad_j||_2."""
        f = self.f(W)
        GY = float((self.b.reshape(self.shape) * W).sum()) - self.yy
        GG = max(2.0 * f, 1e-300)
        sdual = float(torch.linalg.matrix_norm(g, ord=2).max())
        t = min(max(-GY / GG, 0.0), beta / sdual if sdual > 0 else np.inf)
        lower = -t * GY - 0.5 * t * t * GG
        value = f + beta * float(torch.linalg.matrix_norm(W, ord="nuc").sum())
        return (value - lower) / max(abs(value), 1e-300)


def fista(head, beta: float, max_iter: int = 20000, tol: float = 1e-6, check_every: int = 10,
          L0: float = 1.0, shrink: float = 0.9, Z0=None, batch_size=None, gram="auto",
          progress: bool = True, head64=None, **power) -> dict:
    """Run FISTA on ``head`` (its dtype and device); returns a dict for :class:`.api.HeadFit`.

    ``gram``: use the Gram blocks (squared loss only; ``'auto'``: when P m <= 4096) so that an
    iteration costs nothing per sample; the stopping test then uses the same certificate computed
    from Gram quantities, and the returned certificate is recomputed on the data in float64.
    """
    t0 = time.perf_counter()
    head64 = head64 or (head if head.Xt.dtype == torch.float64 else head.with_dtype(torch.float64))
    dev = head.Xt.device
    P, p, q = head.shape
    c = head.targets(slice(0, 1)).shape[-1]
    if gram == "auto":
        gram = head.loss == "squared" and not head.complex and P * p * q // c <= 4096
    if gram and head.loss != "squared":
        raise ValueError("gram=True needs loss='squared' (the Gram form is the quadratic loss); "
                         "use gram=False or 'auto' for cross-entropy")
    smooth = _Quadratic(head, batch_size) if gram else _Autograd(head, batch_size)
    zd = head.zdtype()
    Z = torch.zeros(head.shape, dtype=zd, device=dev) if Z0 is None else Z0.to(dev, zd).clone()
    Yk, tk, L = Z.clone(), 1.0, float(L0)
    history, converged, restarts, gap = [], False, 0, np.inf
    bar = tqdm(range(1, max_iter + 1), desc=f"FISTA {head.kind}", disable=not progress, leave=False)
    it = 0
    small = dev.type == "cpu" and smooth.quadratic and Z.numel() <= 2**20
    with one_thread(small):  # Gram iterations never touch the data: small matrices only
        for it in bar:
            fy, gy = smooth.f_grad(Yk)
            while True:
                Zn = svt(Yk - gy / L, beta / L)
                D = Zn - Yk
                dd = dot(D, D)
                if smooth.quadratic:
                    ok = smooth.curvature(D) <= L * dd * (1 + 1e-12)
                else:
                    ok = smooth.f(Zn) <= fy + dot(gy, D) + 0.5 * L * dd + 1e-13 * max(abs(fy), 1.0)
                if ok or dd == 0:
                    break
                L *= 2.0
            momentum = dot(Yk - Zn, Zn - Z) <= 0  # adaptive restart otherwise
            restarts += not momentum
            tk = tk if momentum else 1.0
            t_next = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
            Yk = Zn + ((tk - 1) / t_next) * (Zn - Z) if momentum else Zn.clone()
            Z, tk = Zn, t_next
            L *= shrink
            if it % check_every == 0 or it == max_iter:
                if smooth.quadratic:
                    fz, gz = smooth.f_grad(Z)
                    gap = smooth.rel_gap(Z, gz, beta)
                    value = fz + beta * float(torch.linalg.matrix_norm(Z, ord="nuc").sum())
                else:
                    ev = cert.evaluate(head64, beta, Z=Z, batch_size=batch_size, **power)
                    gap, value = ev.certificate.rel_gap, ev.value
                history.append((it, value, gap, time.perf_counter() - t0))
                bar.set_postfix(value=f"{value:.6g}", rel_gap=f"{gap:.1e}")
                if gap <= tol:
                    converged = True
                    break
    ev = cert.evaluate(head64, beta, Z=Z, batch_size=batch_size, **power)
    converged = converged and ev.certificate.rel_gap <= max(tol, 1e-12)
    return dict(Zt=Z, evaluation=ev, iterations=it, converged=converged, history=history,
                wall_time=time.perf_counter() - t0,
                info={"restarts": restarts, "final_L": L, "gram": bool(gram)})
