r"""Burer–Monteiro path: :math:`Z_j=U_jV_j^\top`, never forming Z.

.. math:: \min_{U,V}\ L(\mathcal{A}(UV^\top))+\tfrac\beta2\big(\|U\|_F^2+\|V\|_F^2\big),

whose minimum over r >= rank(Z*) columns equals the convex optimum, since
:math:`\|Z\|_*=\min_{UV^\top=Z}\tfrac12(\|U\|_F^2+\|V\|_F^2)`.  For linear attention this *is* the
multi-head network (column h of U is vec(W1_h), of V vec(W2_h)).  Adam on minibatches of samples
(the loss part scaled by n / batch, an unbiased estimate of the full sum), a cosine-decaying rate,
then optionally an L-BFGS polish on the full batch; finally the float64 certificate over the full
data (:mod:`.certify`): the weak-duality lower bound and the stationary-point bound
:math:`(p-p^\star)/p^\star\le(\|\nabla_ZF\|_2/\beta-1)_+`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import certify as cert


def _complex(head, U, V):
    """Complex heads keep real parameters (..., 2) (L-BFGS needs real tensors)."""
    if head.complex:
        return torch.view_as_complex(U), torch.view_as_complex(V)
    return U, V


def _objective(head, U, V, beta, idx, scale):
    out = head.forward_factored(*_complex(head, U, V), idx)
    return scale * head.loss_of(out, idx) + 0.5 * beta * (U.square().sum() + V.square().sum())


def burer_monteiro(head, beta: float, rank: int | None = None, epochs: int = 300,
                   batch_size: int | None = 256, lr: float = 1e-2, polish_iter: int = 2000,
                   init_scale: float = 1e-1, seed: int = 0, tol: float = 1e-6,
                   eval_batch_size: int | None = None, progress: bool = True, head64=None,
                   **power) -> dict:
    """Adam (+ L-BFGS polish) on the factors; returns a dict for :class:`.api.HeadFit`."""
    t0 = time.perf_counter()
    P, p, q = head.shape
    r = min(p, q, 64) if rank is None else rank
    dt, dev = head.Xt.dtype, head.Xt.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    extra = (2,) if head.complex else ()
    U = (torch.randn(P, p, r, *extra, generator=gen, dtype=torch.float64) * init_scale / np.sqrt(p))
    V = (torch.randn(P, q, r, *extra, generator=gen, dtype=torch.float64) * init_scale / np.sqrt(q))
    U = U.to(dev, dt).requires_grad_(True)
    V = V.to(dev, dt).requires_grad_(True)
    n = head.n
    b = n if batch_size is None else min(batch_size, n)
    steps_per_epoch = int(np.ceil(n / b))
    history, it = [], 0
    if epochs > 0:
        opt = torch.optim.Adam([U, V], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
        perm_gen = torch.Generator(device="cpu").manual_seed(seed + 1)
        for _ in tqdm(range(epochs), desc=f"Burer-Monteiro {head.kind}", disable=not progress,
                       leave=False):
            perm = torch.randperm(n, generator=perm_gen).to(dev)
            total = 0.0
            for k in range(steps_per_epoch):
                idx = perm[k * b:(k + 1) * b]
                opt.zero_grad()
                f = _objective(head, U, V, beta, idx, n / idx.numel())
                f.backward()
                opt.step()
                sched.step()
                total += float(f.detach()) / steps_per_epoch
                it += 1
            history.append((it, total, time.perf_counter() - t0))
    if polish_iter > 0:
        lb = torch.optim.LBFGS([U, V], lr=1.0, max_iter=100, history_size=50, tolerance_grad=1e-13,
                               tolerance_change=1e-16, line_search_fn="strong_wolfe")

        def closure():
            lb.zero_grad()
            f = sum(_objective(head, U, V, 0.0, idx, 1.0) for idx in head.batches(eval_batch_size))
            f = f + 0.5 * beta * (U.square().sum() + V.square().sum())
            f.backward()
            return f

        prev = np.inf
        for _ in range(max(1, polish_iter // 100)):
            lb.step(closure)
            cur = float(closure().detach())
            history.append((it + lb.state[U].get("n_iter", 0), cur, time.perf_counter() - t0))
            if not np.isfinite(cur) or abs(prev - cur) <= 1e-15 * max(abs(cur), 1.0):
                break
            prev = cur
        it += lb.state[U].get("n_iter", 0)
    head64 = head64 or (head if dt == torch.float64 else head.with_dtype(torch.float64))
    U, V = _complex(head, U.detach(), V.detach())
    ev = cert.evaluate(head64, beta, factors=(U, V), batch_size=eval_batch_size, **power)
    with torch.no_grad():
        penalty = 0.5 * float(cert.to64(U).abs().square().sum() + cert.to64(V).abs().square().sum())
    p_bm = ev.value - beta * float(cert.compact_svd(U, V)[1].sum()) + beta * penalty
    bound = cert.stationary_bound(ev.dual.value, beta)
    return dict(factors=(U, V), evaluation=ev, iterations=it,
                converged=ev.certificate.rel_gap <= tol, history=history,
                wall_time=time.perf_counter() - t0,
                info={"rank": r, "factored_value": p_bm, "stationary_bound": bound})
