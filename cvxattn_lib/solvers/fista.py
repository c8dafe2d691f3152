r"""Accelerated proximal gradient (FISTA) for :math:`\min_Z f(Z)+\beta\sum_j\|Z_j\|_*`, full batch.

* :math:`f(Z)=L(\mathcal{A}(Z))`, its gradient :math:`\mathcal{A}^*(\nabla L)` (by autograd, or
  through the stacked design; see :func:`fista`);
* prox of :math:`\tau\|\cdot\|_*` = singular-value soft-thresholding,
  :math:`\operatorname{prox}(Z)=U\max(S-\tau,0)V^\top` (batched SVD over the gates, or the exact
  Gram route :func:`svt_gram`);
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


_BLAS_ONE_THREAD = None  # threadpoolctl's controller, made at the first partial eigh (or False)


def _blas_controller():
    """threadpoolctl's controller of the loaded BLAS libraries (made once), or False without it."""
    global _BLAS_ONE_THREAD
    if _BLAS_ONE_THREAD is None:
        try:
            from scipy.linalg import lapack  # noqa: F401  (load scipy's OpenBLAS before looking)
            from threadpoolctl import ThreadpoolController
            _BLAS_ONE_THREAD = ThreadpoolController()
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _BLAS_ONE_THREAD = False
    return _BLAS_ONE_THREAD


def _one_blas_thread():
    """A context that runs numpy's and scipy's BLAS/LAPACK on one thread (the limit applies from
    this call until the context exits: use it in a ``with`` at once), or None without
    threadpoolctl: on a busy 2-core machine a threaded 256 x 256 eigensolver is 30x slower than
    a single thread."""
    ctl = _blas_controller()
    return ctl.limit(limits=1, user_api="blas") if ctl else None


#: entries per block up to which :func:`_bmm` multiplies on one BLAS thread (numpy/OpenBLAS)
SMALL_BLOCK = 2**20
#: ... and from which (below it torch's call costs less than the thread limit's round trip)
TINY_BLOCK = 2**12


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched a @ b; small real CPU blocks by numpy's matmul on one OpenBLAS thread (measured
    for the Mixer's 256 x 768 blocks on one core: the Gram 10 ms against 17 ms for torch's bmm),
    otherwise torch's."""
    ctx = (_one_blas_thread() if a.device.type == "cpu" and not a.is_complex()
           and a.dtype == b.dtype and a.dtype in (torch.float64, torch.float32)
           and a[0].numel() <= SMALL_BLOCK and b[0].numel() <= SMALL_BLOCK
           and max(a[0].numel(), b[0].numel()) >= TINY_BLOCK else None)
    if ctx is None:
        return a @ b
    with ctx:
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))


#: the partial eigensolver pays when at most this fraction of the eigenvalues exceeds the floor
#: (measured, 8 blocks of 256 x 256 on one core: 20 of 256 wanted, 22 ms against 48 ms for the
#: full ``eigh``; 40 wanted, about the same; all 256, 4x slower)
PARTIAL_FRACTION = 1 / 8


def top_eigh(C: torch.Tensor, floor: float, partial: bool = False):
    r"""The eigenpairs of symmetric blocks C (P, m, m) with eigenvalue > ``floor``, ascending, as
    ``(lam (P, k), U (P, m, k))`` with k the largest count over the blocks; a block with fewer is
    padded in front with eigenvalue ``floor`` and a zero vector (so a weight that vanishes at the
    floor gives it nothing).

    ``partial=True`` (used on the CPU in float64 only): LAPACK's ``dsyevr`` restricted to the
    interval (floor, trace]: the tridiagonal reduction and only the wanted eigenvectors (MRRR),
    about half the cost of a full ``eigh`` when few eigenvalues exceed the floor (slower when
    most do: see :data:`PARTIAL_FRACTION`); the same backward-stable eigenpairs, not an
    approximation.  Otherwise (or without threadpoolctl) the full ``torch.linalg.eigh``, cut at
    the floor."""
    P, m, _ = C.shape
    ctx = (_one_blas_thread() if partial and C.device.type == "cpu" and C.dtype == torch.float64
           and m > 1 else None)
    if ctx is None:
        lam, U = torch.linalg.eigh(C)
        k = int((lam > floor).sum(dim=1).max()) if P else 0
        lam, U = lam[:, m - k:], U[:, :, m - k:]
        return torch.where(lam > floor, lam, floor), torch.where(lam[:, None, :] > floor, U, 0.0)
    from scipy.linalg import lapack

    Cn = C.numpy()
    top = np.einsum("pii->p", Cn).max() * (1.0 + 1e-8) + 1.0  # >= every eigenvalue (PSD blocks)
    parts = []
    with ctx:
        for j in range(P):
            w, z, cnt, _, info = lapack.dsyevr(Cn[j], compute_v=1, range="V", vl=floor, vu=top,
                                               lower=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"dsyevr failed (info={info}) on block {j}")
            parts.append((w[:cnt], z[:, :cnt]))
    k = max((len(w) for w, _ in parts), default=0)
    lam = np.full((P, k), floor)
    U = np.zeros((P, m, k))
    for j, (w, z) in enumerate(parts):
        if len(w):
            lam[j, k - len(w):], U[j, :, k - len(w):] = w, z
    return torch.from_numpy(lam), torch.from_numpy(U)


#: bound on eps (sigma_1 / tau)^2 up to which :func:`svt_gram` trusts the Gram route (else the SVD)
GRAM_ACCURACY = 1e-6


def _svd_wide(A: torch.Tensor):
    """Thin SVD of wide blocks A (P, p, q), p <= q: for q >= 2p by the QR of A^T (A = R^T Q^T) and the
    SVD of the p x p factor, backward stable like the SVD of A and about twice as fast there."""
    if A.shape[2] < 2 * A.shape[1]:
        return torch.linalg.svd(A, full_matrices=False)
    Q, R = torch.linalg.qr(A.transpose(1, 2))
    U, s, Vh = torch.linalg.svd(R.transpose(1, 2))
    return U, s, Vh @ Q.transpose(1, 2)


def svt_gram(Z: torch.Tensor, tau: float, accuracy: float = GRAM_ACCURACY,
             rank_hint: int | None = None, ranks: list | None = None,
             factors: list | None = None, out: torch.Tensor | None = None):
    r"""The same prox as :func:`svt` without a full SVD, and the nuclear norm of the result.

    Per block, with :math:`A=Z_j` taken on its short side (:math:`p\le q`):
    :math:`\operatorname{SVT}_\tau(A)=U_k\,\mathrm{diag}(1-\tau/\sigma_k)\,U_k^\top A` where
    :math:`(\sigma_k^2, U_k)` are the eigenpairs of :math:`AA^\top` with :math:`\sigma_k>\tau`
    (since :math:`V^\top=\Sigma^{-1}U^\top A`): one Gram product and the eigendecomposition of
    a p x p matrix, several times cheaper than the SVD of the p x q block.  Blocks with
    :math:`\|A\|_F\le\tau` are zero without any decomposition.  Computed in float64 whatever the
    input dtype.  The Gram squares the condition number: the relative error grows like
    :math:`\epsilon(\sigma_1/\tau)^2` (measured: 100x or more below it for sigma_1 / tau from 1e2 to
    1e5, with a cluster of singular values at tau: 1e-10 at 1e5); blocks where that exceeds
    ``accuracy`` fall back to the SVD (of the p x p factor of a QR when q >= 2p).  Only the
    eigenpairs above :math:`\tau^2` are used; small CPU blocks are multiplied on one BLAS thread.

    ``rank_hint``: the rank expected (FISTA passes the previous iterate's): at most
    :data:`PARTIAL_FRACTION` p, the eigenpairs come from the partial eigensolver
    (:func:`top_eigh`), else from the full one; the result is the same either way (the hint only
    picks the faster exact route).  ``ranks``: a list that receives the largest rank over the blocks.
    ``factors``: a list that receives ``(F, R)`` with SVT(Z)_j = F_j R_j (F (P, p, k), R (P, k, q))
    when every block went the Gram route on its wide side (else ``None``).  ``out``: a tensor
    like Z (not Z) that receives the result when every block is active on its wide side.
    Returns ``(SVT(Z), sum of its nuclear norms)``."""
    P, p, q = Z.shape
    if Z.is_complex():
        out = svt(Z, tau)
        return out, float(torch.linalg.matrix_norm(to64(out), ord="nuc").sum())
    wide = p <= q
    A = (Z if wide else Z.transpose(1, 2)).to(torch.float64)
    fro2 = torch.linalg.vector_norm(A, dim=(1, 2)) ** 2
    act = fro2 > tau * tau
    n_act = int(act.sum())
    if n_act == 0:
        if ranks is not None:
            ranks.append(0)
        return torch.zeros_like(Z), 0.0
    Aa = A if n_act == P else A[act]  # no copy when every block is active
    partial = (rank_hint is not None and rank_hint <= PARTIAL_FRACTION * A.shape[1]
               and A.shape[1] >= 64)  # small Grams: the full eigh costs less than a loop
    lam, U = top_eigh(_bmm(Aa, Aa.transpose(1, 2)), tau * tau, partial)  # ascending, > tau^2
    k = lam.shape[1]
    if ranks is not None:
        ranks.append(k)
    if k == 0:
        return torch.zeros_like(Z), 0.0
    sig = lam.clamp(min=tau * tau).sqrt()  # sigma <= tau get weight 0 below
    wgt = torch.where(sig > tau, 1.0 - tau / sig, 0.0)  # 0 on the padding (and at tau = 0)
    Fk, Rk = U * wgt[:, None, :], _bmm(U.transpose(1, 2), Aa)
    into = out if (out is not None and wide and n_act == P and out.dtype == torch.float64
                   and out.device == A.device and out.is_contiguous()) else None
    if into is not None and out.device.type == "cpu" and _blas_controller() \
            and TINY_BLOCK <= into[0].numel() <= SMALL_BLOCK:
        with _one_blas_thread():
            np.matmul(Fk.numpy(), Rk.numpy(), out=into.numpy())
        res = into
    elif into is not None:
        res = torch.matmul(Fk, Rk, out=into)
    else:
        res = _bmm(Fk, Rk)
    nuc_b = (sig - tau).sum(dim=1)
    eps = float(np.finfo(np.float64).eps)
    bad = eps * (sig[:, -1] / tau) ** 2 > accuracy  # the Gram would be inaccurate: SVD instead
    if bool(bad.any()):
        Ub, sb, Vb = _svd_wide(Aa[bad])
        sb = torch.clamp(sb - tau, min=0.0)
        res[bad] = (Ub * sb[:, None, :]) @ Vb
        nuc_b[bad] = sb.sum(dim=1)
    nuc = float(nuc_b.sum())
    if factors is not None:
        whole = wide and n_act == P and not bool(bad.any())
        factors.append((Fk.to(Z.dtype), Rk.to(Z.dtype)) if whole else None)
    if n_act == P:
        out = res
    else:
        out = torch.zeros_like(A)
        out[act] = res
    out = out if wide else out.transpose(1, 2)
    return out.to(Z.dtype), nuc


def spectral_upper(G: torch.Tensor) -> float:
    r"""An upper bound on :math:`\max_j\|G_j\|_2` (float64): the largest eigenvalue of the short-side
    Gram :math:`G_jG_j^\top`, plus a bound on its round-off (:math:`2k\epsilon\|G_j\|_F^2`: the
    product and the symmetric eigensolver are backward stable), square-rooted.  Never below the
    exact value, above it by a relative :math:`O(k\epsilon)`."""
    G = to64(G)
    if G.is_complex():
        return float(torch.linalg.matrix_norm(G, ord=2).max())
    if G.shape[1] > G.shape[2]:
        G = G.transpose(1, 2)
    k = G.shape[1]
    C = _bmm(G, G.transpose(1, 2))
    lam = torch.linalg.eigvalsh(C)[:, -1]
    pad = 2.0 * (k + G.shape[2]) * float(np.finfo(np.float64).eps) * G.square().sum(dim=(1, 2))
    return float((lam.clamp(min=0) + pad).sqrt().max())


def to64(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """Real inner product Re sum conj(a) b (the one autograd's complex gradients use)."""
    a, b = a.reshape(-1), b.reshape(-1)  # one BLAS dot, no temporary
    return float(torch.vdot(a, b).real) if a.is_complex() else float(torch.dot(a, b))


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


class _Design:
    r"""f = L(B w) through the stacked design B (rows, P m) built once (:meth:`~.heads.ConvexHead.
    stacked_design`), with the loss gradient written out: an iteration costs a product with B and
    one with B^T and never recomputes the data products (gate masks times tokens, per-token Grams)
    that do not depend on Z.  Any loss; real heads whose design fits in ``design_limit`` entries."""

    quadratic = False

    def __init__(self, head, batch_size):
        self.head = head
        self.B = head.stacked_design(batch_size)
        self.shape = head.shape
        self.Y = head.targets()
        self.c = head.out_columns()
        self.loss = head.loss
        self._check()

    def _check(self):
        """The design must be the head's map: compared with ``head.forward`` at a random Z on the
        first samples (a subclass that changes the read-out without its design is caught here)."""
        h = self.head
        gen = torch.Generator().manual_seed(0)
        Z = torch.randn(h.shape, generator=gen, dtype=torch.float64).to(self.B.device, self.B.dtype)
        idx = slice(0, min(h.n, 4))
        with torch.no_grad():
            want = h.forward(Z, idx)
            got = self.B[:want.shape[0]] @ Z.reshape(-1, self.c)
        tol = 1e-9 if self.B.dtype == torch.float64 else 1e-4
        if float((got - want).abs().max()) > tol * max(float(want.abs().max()), 1.0):
            raise ValueError(f"the stacked design of head {h.kind!r} does not reproduce its forward "
                             "map (a read-out without a matching design?); use design=False")

    def out(self, W):
        return self.B @ W.reshape(-1, self.c)

    def out_factored(self, F, R):
        r"""B w for Z_j = F_j R_j (F (P, p, k), R (P, k, q)) without forming Z: with B's columns
        read as (j, row r of Z_j, column block a of Z_j), :math:`H_{jan\cdot}=\sum_r B[n,j,r,a]
        F_j[r,\cdot]` and then one (rows, P (q/c) k) x (P (q/c) k, c) product; (k (p + q) c)/(p q)
        of the dense product's work per row.  None when that is not cheaper (k large) or the
        permuted copy of B would be large."""
        P, p, q = self.shape
        k, a = F.shape[2], q // self.c
        if k == 0 or 2 * k * (p + q) > p * q or self.B.numel() > 2**23:
            return None
        if getattr(self, "_Bp", None) is None:  # (P, (q/c) rows, p): B's columns by (j, a | r)
            n = self.B.shape[0]
            self._Bp = self.B.reshape(n, P, p, a).permute(1, 3, 0, 2).reshape(P, a * n, p).contiguous()
        H = _bmm(self._Bp, F.to(self._Bp.dtype))  # (P, a n, k)
        n = self.B.shape[0]
        H = H.reshape(P, a, n, k).permute(2, 0, 1, 3).reshape(n, P * a * k)
        Rr = R.to(H.dtype).reshape(P, k, a, self.c).permute(0, 2, 1, 3).reshape(P * a * k, self.c)
        return H @ Rr

    def _loss_grad(self, U):
        """L(U) (a sum) and dL/dU, explicitly."""
        if self.loss == "squared":
            R = U - self.Y
            return float(0.5 * R.square().sum()), R
        lse = torch.logsumexp(U, dim=1)
        rows = torch.arange(U.shape[0], device=U.device)
        value = float((lse - U[rows, self.Y]).sum())
        G = torch.exp(U - lse[:, None])
        G[rows, self.Y] -= 1.0
        return value, G

    def f(self, W):
        return self._loss_grad(self.out(W))[0]

    def f_grad(self, W):
        return self.f_grad_out(self.out(W))

    def f_grad_out(self, U, out=None):
        """f and its gradient from the outputs U = B w (one product with B^T; into ``out``)."""
        value, G = self._loss_grad(U)
        if out is not None:
            torch.matmul(self.B.transpose(0, 1), G, out=out.view(-1, self.c))
            return value, out
        return value, (self.B.transpose(0, 1) @ G).reshape(self.shape)

    def rel_gap(self, W, beta, nuc, U=None):
        """The weak-duality gap of :mod:`.certify` at W (nuclear norm ``nuc`` known from the prox,
        outputs ``U`` = B w if known), in the head's dtype: the stopping test (the returned
        certificate is recomputed exactly)."""
        from ..certificates import certify

        U = (self.out(W) if U is None else U).to(torch.float64)
        Y = self.Y.cpu().numpy() if self.loss == "cross_entropy" else self.Y.double().cpu().numpy()
        value, G = self._loss_grad(U)
        g = (self.B.transpose(0, 1).to(torch.float64) @ G).reshape(self.shape)
        s = spectral_upper(g)
        c = certify(value + beta * nuc, U.cpu().numpy(), Y, self.loss, beta, lambda V: s)
        return c.rel_gap, c.value


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


#: entries of the stacked design (rows x P m) up to which FISTA builds it (``design='auto'``)
DESIGN_LIMIT = 2**25


def fista(head, beta: float, max_iter: int = 20000, tol: float = 1e-6, check_every: int = 10,
          L0: float = 1.0, shrink: float = 0.9, Z0=None, batch_size=None, gram="auto",
          progress: bool = True, head64=None, design="auto", prox: str = "auto",
          design_limit: int = DESIGN_LIMIT, zero_test: bool = True, **power) -> dict:
    """Run FISTA on ``head`` (its dtype and device); returns a dict for :class:`.api.HeadFit`.

    How f and its gradient are computed, the first that applies:

    * ``gram``: the Gram blocks (squared loss only; ``'auto'``: when P m <= 4096), so that an
      iteration costs nothing per sample; the stopping test uses the same certificate computed
      from Gram quantities;
    * ``design``: the stacked design B (rows, P m), built once (``'auto'``: real heads whose B has
      at most ``design_limit`` entries): per iteration one product B z+ (from the prox's low-rank
      factors when cheaper, :meth:`_Design.out_factored`; B y of the extrapolated point follows by
      linearity) and one with B^T (the gradient), the data products (gate masks times tokens,
      per-token Grams) never recomputed; the stopping test is the certificate from B, with the
      dual norm bounded from above (:func:`spectral_upper`); on the CPU the full-size
      temporaries live in buffers allocated once;
    * else autograd through ``head.forward`` over sample batches, the stopping test
      :func:`.certify.evaluate` on the float64 head.

    ``zero_test``: first check whether Z = 0 is optimal (the gradient at 0 has dual norm <= beta,
    exactly as :func:`.certify.beta_max` computes it) and return it without iterating.

    ``prox``: ``'auto'`` (:func:`svt_gram`: the Gram route, the eigenpairs above the threshold
    only -- by the partial eigensolver :func:`top_eigh` when the previous iterate's rank is small
    --, skipping blocks with Frobenius norm <= the threshold; the SVD where the Gram would be
    inaccurate) or ``'svd'`` (:func:`svt`, a full SVD of every block).  ``gram=False,
    design=False, prox='svd', zero_test=False`` is the reference path (the solver before these shortcuts).
    Whatever the path, the returned certificate is recomputed on the data in float64.
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
    if prox not in ("auto", "svd"):
        raise ValueError(f"prox must be 'auto' or 'svd', got {prox!r}")
    auto_design = design == "auto"
    if auto_design:
        design = not gram and not head.complex and head.design_entries() <= design_limit
    if design and head.complex:
        raise ValueError("design=True needs a real head (the spectral FNO head has no real "
                         "design); use design=False or 'auto'")
    smooth = None
    if gram:
        smooth = _Quadratic(head, batch_size)
    elif design:
        try:
            smooth = _Design(head, batch_size)
        except (ValueError, NotImplementedError):
            if not auto_design:
                raise
            design = False  # 'auto': the head's own forward map, by autograd
    smooth = smooth or _Autograd(head, batch_size)
    zd = head.zdtype()
    if Z0 is None and zero_test:  # Z = 0 optimal iff max_j ||grad_j f(0)||_2 <= beta: no iterations
        g0 = smooth.f_grad(torch.zeros(head.shape, dtype=zd, device=dev))[1]
        if spectral_upper(g0) * (1.0 - 1e-9) <= beta and cert.beta_max(
                head64, batch_size, **power).value <= beta:
            Zz = torch.zeros(head.shape, dtype=zd, device=dev)
            ev = cert.evaluate(head64, beta, Z=Zz, batch_size=batch_size, **power)
            return dict(Zt=Zz, evaluation=ev, iterations=0, converged=ev.certificate.rel_gap <= tol,
                        history=[(0, ev.value, ev.certificate.rel_gap, time.perf_counter() - t0)],
                        wall_time=time.perf_counter() - t0,
                        info={"restarts": 0, "final_L": float(L0), "gram": bool(gram),
                              "design": bool(design), "prox": "none (zero is optimal)"})
    Z = torch.zeros(head.shape, dtype=zd, device=dev) if Z0 is None else Z0.to(dev, zd).clone()
    Yk, tk, L = Z.clone(), 1.0, float(L0)
    history, converged, restarts, gap = [], False, 0, np.inf
    bar = tqdm(range(1, max_iter + 1), desc=f"FISTA {head.kind}", disable=not progress, leave=False)
    it = 0
    small = dev.type == "cpu" and smooth.quadratic and Z.numel() <= 2**20
    fast_prox = prox == "auto" and not head.complex
    # round-off allowed in the sufficient-decrease test: float32 values carry ~1e-7 relative noise,
    # which a 1e-13 slack turns into spurious step halvings (L grows until FISTA stalls)
    slack = 1e-13 if head.Xt.dtype == torch.float64 else 64 * float(torch.finfo(head.Xt.dtype).eps)
    nuc, rank, ranks, factors = 0.0, None, [], []  # rank: the last prox's, the next one's hint
    # the design is linear: B y = (1 + m) B z+ - m B z for the extrapolated y, so each iteration
    # costs one product B z+ (the sufficient-decrease test's) and one with B^T (the gradient)
    linear = isinstance(smooth, _Design)
    out_z = out_y = smooth.out(Z) if linear else None
    # the full-size temporaries (step, prox, differences, gradient) reuse buffers on the CPU:
    # fresh 12.6 MB tensors each iteration are slow to allocate (measured, 8 x 256 x 768 float64:
    # the step's four full-size results and three dots, 42 ms fresh against 14 ms in place)
    buf = ({name: torch.empty_like(Z, memory_format=torch.contiguous_format)
            for name in ("g", "step", "spare", "D", "dZ")}
           if linear and fast_prox and dev.type == "cpu" else None)

    def out_of(name):
        return {"out": buf[name]} if buf else {}
    with one_thread(small):  # Gram iterations never touch the data: small matrices only
        for it in bar:
            fy, gy = (smooth.f_grad_out(out_y, out=buf["g"] if buf else None) if linear
                      else smooth.f_grad(Yk))
            while True:
                step = torch.add(Yk, gy, alpha=-1.0 / L, **out_of("step"))  # Y - grad / L
                if fast_prox:
                    Zn, nuc_n = svt_gram(step, beta / L, rank_hint=rank, ranks=ranks,
                                         factors=factors if linear else None, **out_of("spare"))
                    rank = ranks.pop()
                else:
                    Zn = svt(step, beta / L)
                D = torch.sub(Zn, Yk, **out_of("D"))
                dd = dot(D, D)
                if smooth.quadratic:
                    ok = smooth.curvature(D) <= L * dd * (1 + 1e-12)
                else:
                    if linear:
                        fac = factors.pop() if factors else None
                        out_n = None if fac is None else smooth.out_factored(*fac)
                        out_n = smooth.out(Zn) if out_n is None else out_n
                        fz = smooth._loss_grad(out_n)[0]
                    else:
                        fz = smooth.f(Zn)
                    ok = fz <= fy + dot(gy, D) + 0.5 * L * dd + slack * max(abs(fy), 1.0)
                if ok or dd == 0:
                    break
                L *= 2.0
            dZ = torch.sub(Zn, Z, **out_of("dZ"))
            momentum = dot(D, dZ) >= 0  # <Y - Z+, Z+ - Z> <= 0; adaptive restart otherwise
            restarts += not momentum
            tk = tk if momentum else 1.0
            t_next = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
            if buf:  # Yk has its own buffer, never Z's or Zn's
                Yk = torch.add(Zn, dZ, alpha=(tk - 1) / t_next, out=Yk) if momentum else Yk.copy_(Zn)
            else:
                Yk = torch.add(Zn, dZ, alpha=(tk - 1) / t_next) if momentum else Zn.clone()
            if linear:
                out_y = (torch.add(out_n, out_n - out_z, alpha=(tk - 1) / t_next) if momentum
                         else out_n)
                out_z = out_n
            if buf and Zn is buf["spare"]:  # the old iterate's buffer takes the next prox
                buf["spare"] = Z
            Z, tk = Zn, t_next
            if fast_prox:
                nuc = nuc_n
            L *= shrink
            if it % check_every == 0 or it == max_iter:
                if isinstance(smooth, _Design):
                    if not fast_prox:
                        nuc = float(torch.linalg.matrix_norm(to64(Z), ord="nuc").sum())
                    gap, value = smooth.rel_gap(Z, beta, nuc, U=out_z)
                elif smooth.quadratic:
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
                info={"restarts": restarts, "final_L": L, "gram": bool(gram),
                      "design": bool(design), "prox": "gram" if fast_prox else "svd"})
