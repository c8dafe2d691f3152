r"""Accelerated proximal gradient (FISTA) for :math:`\min_Z f(Z)+\beta\sum_j\|Z_j\|_*`, full batch.

* :math:`f(Z)=L(\mathcal{A}(Z))`, its gradient :math:`\mathcal{A}^*(\nabla L)` (by autograd, or
  through the stacked design; see :func:`fista`);
* prox of :math:`\tau\|\cdot\|_*` = singular-value soft-thresholding,
  :math:`\operatorname{prox}(Z)=U\max(S-\tau,0)V^\top` (batched SVD over the gates, the exact
  Gram route :func:`svt_gram`, or -- large wide blocks of small rank, e.g. the gated Mixer's --
  the inexact warm-started subspace route :func:`svt_subspace` inside a loop that keeps the
  iterates as low-rank factors, :func:`_lowrank_fista`; an inexact prox changes the steps, never
  the certificate, which is computed from the iterate);
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
        whole = wide and not bool(bad.any())
        if whole and n_act < P:  # zero factors for the blocks thresholded to 0
            Ff = Fk.new_zeros((P, p, k))
            Rf = Rk.new_zeros((P, k, q))
            Ff[act], Rf[act] = Fk, Rk
            Fk, Rk = Ff, Rf
        factors.append((Fk.to(Z.dtype), Rk.to(Z.dtype)) if whole else None)
    if n_act == P:
        out = res
    else:
        out = torch.zeros_like(A)
        out[act] = res
    out = out if wide else out.transpose(1, 2)
    return out.to(Z.dtype), nuc


#: the subspace prox (:func:`svt_subspace`) is used on blocks whose short side is at least this
#: (smaller Grams cost less than its products: the 64 x 64 Grams of gated attention)
SUBSPACE_MIN = 128
#: ... once the previous rank is at most this fraction of the short side (measured, 8 blocks of
#: 256 x 768: the subspace prox costs about as much as the exact one at k = 256 / 2)
SUBSPACE_FRACTION = 1 / 4
#: the low-rank loop and the outputs from factors (:meth:`_Design.out_factored`) need a copy of the
#: design permuted once (``Bt``); both are used only while the design has at most this many entries
FACTORED_DESIGN_LIMIT = 2**23


def svt_subspace(A: torch.Tensor, tau: float, V0: torch.Tensor, power: int = 1,
                 out: torch.Tensor | None = None, residual: bool = False) -> dict:
    r"""Singular-value soft-thresholding of wide blocks A (P, p, q), p <= q, restricted to a subspace:
    a warm-started block power step (the randomized range finder of Halko, Martinsson & Tropp 2011
    started from the previous prox's vectors, as in the inexact prox of Yao & Kwok 2015), with an
    a-posteriori error bound.

    From a basis V0 (P, q, k) (FISTA passes the previous prox's right Ritz vectors):
    :math:`V=\mathrm{qr}(V_0)` (``power`` - 1 further steps :math:`V=\mathrm{qr}(A^\top
    \mathrm{qr}(AV))`), :math:`Q=\mathrm{qr}(AV)`, :math:`B=Q^\top A` (k x q), the eigenpairs
    :math:`(s_i^2, u_i)` of the k x k Gram :math:`BB^\top` (the Ritz values :math:`s_i`), and

    .. math:: X=\sum_{s_i>\tau}(1-\tau/s_i)\,Qu_i\,u_i^\top B=\operatorname{SVT}_\tau(QQ^\top A).

    Two passes over A (:math:`AV`, :math:`Q^\top A`) and the product that forms X.

    Error bound.  With :math:`V_1` the right Ritz vectors kept (:math:`v_i=B^\top u_i/s_i`),
    :math:`E=(I-QQ^\top)A` and :math:`\hat s` the largest Ritz value not above tau, X is *exactly*
    :math:`\operatorname{SVT}_\tau(A-EV_1V_1^\top)` whenever :math:`\|E\|_2^2+\hat s^2\le\tau^2`
    (the optimality condition :math:`A-EV_1V_1^\top-X\in\tau\,\partial\|X\|_*` then holds: the
    part of :math:`A-X` outside :math:`(QU_1, V_1)` is :math:`QU_2S_2V_2^\top+E(I-V_1V_1^\top)`,
    whose two terms have orthogonal column spaces and spectral norms at most :math:`\hat s` and
    :math:`\|E\|_2`).  The prox is non-expansive, so then

    .. math:: \|X-\operatorname{SVT}_\tau(A)\|_F\le\|EV_1\|_F\le
       \sqrt{\tau^2-\hat s^2}\;\|(I-VV^\top)V_1\|_F,

    the second because :math:`EV=0` (Q spans AV).  ``bound`` is that last quantity (no pass over
    A: the angle between the kept Ritz vectors and the start); ``residual=True`` also returns the
    Ritz residual :math:`\|EV_1\|_F=\|AV_1-QU_1S_1\|_F` (one more pass), both over all blocks.
    The condition holds when span Q holds every singular direction above tau with room to spare;
    it is not checked here (FISTA keeps spare Ritz values below tau, takes the exact prox every
    few iterations, and its certificate is computed from the iterate whatever the prox).  In the
    blocks' dtype (float32 blocks stay float32); the k x k eigenproblem in float64.

    Returns a dict: ``X`` (P, p, q) (written into ``out`` when given), ``nuc`` (sum of the nuclear
    norms of X), ``rank`` (largest count of Ritz values above tau over the blocks), ``spare``
    (smallest count not above it), ``s_hat``, ``bound``, ``residual`` (None unless asked),
    ``F``, ``R`` (X_j = F_j R_j, F (P, p, r), R (P, r, q)), ``V`` (P, q, k): every right Ritz
    vector, the next call's start, and ``Q`` (P, p, k) (float64)."""
    P, p, q = A.shape
    if p > q:
        raise ValueError(f"A must hold wide blocks (p <= q), got shape {tuple(A.shape)}")
    if V0.ndim != 3 or V0.shape[:2] != (P, q) or not 1 <= V0.shape[2] <= p:
        raise ValueError(f"V0 must have shape (P, q, k) = ({P}, {q}, k) with 1 <= k <= {p}, got "
                         f"{tuple(V0.shape)}")
    if power < 1:
        raise ValueError(f"power must be >= 1, got {power}")
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")
    o = _subspace_core(_DenseOp(A), tau, V0, power, residual)
    F, R = o["F"], o["R"]
    if out is not None and out.shape == A.shape and out.dtype == A.dtype and out.is_contiguous() \
            and out.device.type == "cpu" and _blas_controller():
        with _one_blas_thread():
            np.matmul(F.numpy(), R.numpy(), out=out.numpy())
        o["X"] = out
    else:
        o["X"] = _bmm(F, R)
    return o


class _DenseOp:
    """A stack of blocks (P, p, q) as the operator :func:`_subspace_core` needs."""

    def __init__(self, A):
        self.A, self.shape, self.dtype = A, A.shape, A.dtype

    def matmul(self, V):  # A V, V (P, q, k)
        return _bmm(self.A, V.to(self.dtype))

    def rmatmul(self, Q):  # A^T Q, Q (P, p, k)
        return _bmm(self.A.transpose(1, 2), Q.to(self.dtype))


def _orth(W):
    """An orthonormal basis of the columns of W (P, m, k), float64: Cholesky QR twice (two k x k
    Grams; orthonormal to round-off when W's condition number is below ~1e6), Householder QR
    when a Cholesky factor fails or is ill-conditioned."""
    W = W.to(torch.float64)
    for _ in range(2):
        C = W.transpose(1, 2) @ W
        Lc, info = torch.linalg.cholesky_ex(C)
        d = torch.diagonal(Lc, dim1=1, dim2=2)
        if bool(info.any()) or not bool((d.min(dim=1).values > 1e-6 * d.max(dim=1).values).all()):
            return torch.linalg.qr(W)[0]
        W = torch.linalg.solve_triangular(Lc, W.transpose(1, 2), upper=False).transpose(1, 2)
    return W


def _subspace_core(op, tau, V0, power=1, residual=False):
    """:func:`svt_subspace` on an operator (``shape``, ``dtype``, ``matmul``, ``rmatmul``), without
    forming X."""
    P, p, q = op.shape
    dt = op.dtype
    V = _orth(V0)
    for _ in range(power - 1):
        Q = torch.linalg.qr(op.matmul(V).to(torch.float64))[0]
        V = torch.linalg.qr(op.rmatmul(Q).to(torch.float64))[0]
    Q = torch.linalg.qr(op.matmul(V).to(torch.float64))[0]  # (P, p, k)
    B64 = op.rmatmul(Q).to(torch.float64).transpose(1, 2)  # Q^T A (P, k, q)
    lam, Ub = torch.linalg.eigh(B64 @ B64.transpose(1, 2))  # ascending
    sig = lam.clamp(min=0.0).sqrt()
    keep = sig > tau
    wgt = torch.where(keep, 1.0 - tau / torch.where(keep, sig, 1.0), 0.0)
    R = Ub.transpose(1, 2) @ B64  # rows s_i v_i^T (P, k, q)
    inv = torch.where(sig > 0, 1.0 / torch.where(sig > 0, sig, 1.0), 0.0)
    Vr = (R * inv[:, :, None]).transpose(1, 2)  # right Ritz vectors (P, q, k) (0 where s_i = 0)
    k, r = sig.shape[1], int(keep.sum(dim=1).max())
    QU1 = Q @ Ub[:, :, k - r:]  # the kept pairs lie in the top r (ascending order)
    F = (QU1 * wgt[:, None, k - r:]).to(dt)
    R = R[:, k - r:].to(dt)
    low = torch.where(keep, -1.0, sig)
    s_hat = float(low.max())
    bound, res = 0.0, None
    if r:
        V1 = Vr[:, :, k - r:] * keep[:, None, k - r:]
        off = V1 - V @ (V.transpose(1, 2) @ V1)  # (I - V V^T) V_1
        bound = float(np.sqrt(max(tau * tau - max(s_hat, 0.0) ** 2, 0.0))
                      * torch.linalg.vector_norm(off))
        if residual:
            E = op.matmul(V1).to(torch.float64) - QU1 * (sig * keep)[:, None, k - r:]
            res = float(torch.linalg.vector_norm(E))
    elif residual:
        res = 0.0
    return {"nuc": float(((sig - tau) * keep).sum()), "rank": r,
            "spare": int((~keep).sum(dim=1).min()), "s_hat": s_hat, "bound": bound,
            "residual": res, "F": F, "R": R, "V": Vr.to(dt), "Q": Q}


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

    def Bt(self):
        """B's entries as (gate j, row r of Z_j | column block a of Z_j, sample n): (P, p, (q/c) n),
        made once (a copy as large as B), so that products with factors are batched gemms."""
        if getattr(self, "_Bt", None) is None:
            P, p, q = self.shape
            n, a = self.B.shape[0], q // self.c
            self._Bt = self.B.reshape(n, P, p, a).permute(1, 2, 3, 0).reshape(P, p, a * n).contiguous()
        return self._Bt

    def out_factored(self, F, R):
        r"""B w for Z_j = F_j R_j (F (P, p, k), R (P, k, q)) without forming Z: with B's columns
        read as (j, row r of Z_j, column block a of Z_j), :math:`H_{jan\cdot}=\sum_r B[n,j,r,a]
        F_j[r,\cdot]` and then one (rows, P (q/c) k) x (P (q/c) k, c) product; (k (p + q) c)/(p q)
        of the dense product's work per row.  None when that is not cheaper (k large) or the
        permuted copy of B would be large."""
        P, p, q = self.shape
        k, a = F.shape[2], q // self.c
        if k == 0 or 2 * k * (p + q) > p * q or self.B.numel() > FACTORED_DESIGN_LIMIT:
            return None
        Bt = self.Bt()  # (P, p, (q/c) n)
        Ht = _bmm(F.to(Bt.dtype).transpose(1, 2), Bt)  # (P, k, a n)
        n = self.B.shape[0]
        H = Ht.reshape(P, k, a, n).permute(3, 0, 2, 1).reshape(n, P * a * k)
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
        """f and its gradient from the outputs U = B w (one product with B^T; into ``out``); the
        loss gradient G = dL/dU is kept as ``self.G`` (<B^T G, D> = <G, B D> without a pass over
        the full-size gradient)."""
        value, G = self._loss_grad(U)
        self.G = G
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


class _StepOp:
    r"""The FISTA step :math:`A=Y-\tfrac1L\mathcal{A}^*(G)` as an operator, never formed: Y a
    :class:`_Point`, the gradient :math:`g=B^\top G` applied through the design permuted as
    :math:`B_t` (P, p, (q/c) n) (:meth:`_Design.Bt`): with :math:`g_j[r,(a,b)]=\sum_n
    B_t[j,r,(a,n)]G[n,b]`, :math:`g_jV=B_{t,j}W` with :math:`W[(a,n),\cdot]=\sum_bG[n,b]
    V[(a,b),\cdot]`, and :math:`(g_j^\top Q)[(a,b),\cdot]=\sum_nG[n,b](Q^\top B_{t,j})
    [\cdot,(a,n)]`: one pass over :math:`B_t` (as large as Z) per product, no full-size result."""

    def __init__(self, smooth, Y, G, h):
        self.sm, self.Y, self.G, self.h = smooth, Y, G.to(smooth.B.dtype), h
        self.shape, self.dtype = smooth.shape, smooth.B.dtype
        P, p, q = self.shape
        self.a, self.c = q // smooth.c, smooth.c

    def matmul(self, V):
        P, p, q = self.shape
        V = V.to(self.dtype)
        k = V.shape[2]
        W = torch.from_numpy(np.matmul(self.G.numpy(), V.reshape(P, self.a, self.c, k).numpy()))
        return self.Y.matmul(V) - self.h * _bmm(self.sm.Bt(), W.reshape(P, -1, k))

    def rmatmul(self, Q):
        P, p, q = self.shape
        Q = Q.to(self.dtype)
        k = Q.shape[2]
        Ht = _bmm(Q.transpose(1, 2), self.sm.Bt())  # (P, k, a n)
        gQ = torch.from_numpy(np.matmul(Ht.reshape(P, k, self.a, -1).numpy(), self.G.numpy()))
        return self.Y.rmatmul(Q) - self.h * gQ.permute(0, 2, 3, 1).reshape(P, q, k)

    def dense(self):
        g = (self.sm.B.transpose(0, 1) @ self.G).reshape(self.shape)
        return torch.add(self.Y.dense(), g, alpha=-self.h)


class _Point:
    """A stack of P blocks (P, p, q), dense or as factors F (P, p, r), R (P, r, q) (Z_j = F_j R_j),
    with its outputs B z when known: FISTA's iterates once their rank is small."""

    def __init__(self, dense=None, F=None, R=None):
        self.D, self.F, self.R = dense, F, R

    def rank(self):
        return None if self.F is None else self.F.shape[2]

    def dense(self):
        if self.D is None:
            self.D = _bmm(self.F, self.R)
        return self.D

    def matmul(self, V):
        if self.F is not None:  # small products: numpy's matmul costs less than torch's here
            F, R, V = self.F.numpy(), self.R.numpy(), V.to(self.F.dtype).numpy()
            return torch.from_numpy(np.matmul(F, np.matmul(R, V)))
        return _bmm(self.D, V)

    def rmatmul(self, Q):
        if self.F is not None:
            F, R, Q = self.F.numpy(), self.R.numpy(), Q.to(self.F.dtype).numpy()
            return torch.from_numpy(np.matmul(R.transpose(0, 2, 1),
                                              np.matmul(F.transpose(0, 2, 1), Q)))
        return _bmm(self.D.transpose(1, 2), Q)


def _comb(a, X, b, Y, limit):
    """a X + b Y as a :class:`_Point`: factored (the factors side by side) when both are and the
    summed rank is at most ``limit``, else dense."""
    if X.F is not None and Y.F is not None and X.rank() + Y.rank() <= limit:
        return _Point(F=torch.cat([a * X.F, b * Y.F], dim=2), R=torch.cat([X.R, Y.R], dim=1))
    return _Point(dense=torch.add(X.dense() * a, Y.dense(), alpha=b))


def _sqnorm(X):
    """||X||_F^2 (factored: sum((F^T F) * (R R^T)), exact up to eps x the factors' norms squared,
    far below the sufficient-decrease test's slack)."""
    if X.F is None:
        return dot(X.D, X.D)
    return max(_inner(X, X), 0.0)


def _inner(X, Y):
    """<X, Y> (factored: sum((F_X^T F_Y) * (R_X R_Y^T)), in float64 whatever the factors' dtype:
    the terms cancel when X - Y is small, which float32 sums would not resolve)."""
    if X.F is not None and Y.F is not None:
        d = torch.float64
        return float(((X.F.to(d).transpose(1, 2) @ Y.F.to(d))
                      * (X.R.to(d) @ Y.R.to(d).transpose(1, 2))).sum())
    return dot(X.dense(), Y.dense())


class _SubspaceProx:
    r"""FISTA's prox with the warm-started subspace route (:func:`svt_subspace` on the step as an
    operator, :class:`_StepOp`) where it pays and the exact Gram route (:func:`svt_gram`)
    otherwise.

    Schedule: the exact prox while there is no basis yet, while the previous rank exceeds
    :data:`SUBSPACE_FRACTION` of the short side, every ``exact_every``-th prox (``1``: always),
    and whenever the subspace result fails its test.  A subspace result is accepted when it keeps at least
    ``SPARE`` Ritz values below tau (room for the rank to grow) and its error bound (``bound`` of
    :func:`svt_subspace`) is at most ``rho`` x the previous iteration's step
    :math:`\|Z_{k}-Y_{k-1}\|_F` (a relative error rule: the error goes to 0 with the steps, as the
    convergence theory of inexact accelerated proximal gradient asks, Schmidt, Le Roux & Bach
    2011) or at round-off level; else one more power step from the new Ritz vectors, then the
    exact prox.  After an exact prox the basis is its right singular vectors above tau plus
    ``oversample`` random columns (seeded)."""

    SPARE = 2

    def __init__(self, shape, dtype, rho, exact_every, oversample=8, tries=2):
        self.P, self.p, self.q = shape
        self.dtype, self.rho, self.exact_every = dtype, float(rho), int(exact_every)
        self.oversample, self.tries = oversample, tries
        self.V, self.since_exact, self.scale = None, 0, np.inf
        self.gen = torch.Generator().manual_seed(0)
        self.stats = {"subspace": 0, "exact": 0, "rejected": 0}

    def _random(self, k):
        V = torch.randn(self.P, self.q, k, generator=self.gen, dtype=torch.float64)
        return (V / torch.linalg.vector_norm(V, dim=1, keepdim=True)).to(self.dtype)

    def _from_exact(self, R):
        """Basis from the exact prox's R (P, r, q) (rows s_i v_i^T; zero rows on padding)."""
        R = R.to(torch.float64)
        nr = torch.linalg.vector_norm(R, dim=2)  # (P, r)
        V = (R / torch.where(nr > 0, nr, 1.0)[:, :, None]).transpose(1, 2)
        fill = self._random(R.shape[1] + self.oversample).to(torch.float64)
        V = torch.cat([torch.where(nr[:, None, :] > 0, V, fill[:, :, :R.shape[1]]),
                       fill[:, :, R.shape[1]:]], dim=2)
        return V[:, :, :min(V.shape[2], self.p)].to(self.dtype).contiguous()

    def __call__(self, op, tau, rank_hint):
        """(prox as a :class:`_Point`, nuclear norm, rank)."""
        small = rank_hint is not None and rank_hint <= SUBSPACE_FRACTION * self.p
        if self.V is not None and small and self.since_exact + 1 < self.exact_every:
            V0 = self.V
            for _ in range(self.tries):
                o = _subspace_core(op, tau, V0)
                k = o["V"].shape[2]
                floor = 64 * float(torch.finfo(self.dtype).eps) * np.sqrt(self.q * k) * max(
                    o["s_hat"], float(o["R"].abs().max()) if o["rank"] else 0.0)
                if o["spare"] >= self.SPARE and o["bound"] <= max(self.rho * self.scale, floor):
                    self.since_exact += 1
                    self.stats["subspace"] += 1
                    want = min(self.p, o["rank"] + self.oversample)
                    V = o["V"]
                    if k > want + 4:  # the rank fell: keep the top Ritz vectors
                        V = V[:, :, k - want:]
                    elif k < want:  # the rank grew: random columns for the spare room
                        V = torch.cat([self._random(want - k), V], dim=2)
                    self.V = V.contiguous()
                    return _Point(F=o["F"], R=o["R"]), o["nuc"], o["rank"]
                self.stats["rejected"] += 1
                if o["spare"] < self.SPARE:  # the rank grew to the subspace's size: exact prox
                    break
                V0 = o["V"]
        fac, ranks = [], []
        Zn, nuc = svt_gram(op.dense(), tau, rank_hint=rank_hint, ranks=ranks, factors=fac)
        self.stats["exact"] += 1
        self.since_exact = 0
        rank = ranks.pop()
        fk = fac.pop()
        if fk is None or rank + self.oversample > self.p * SUBSPACE_FRACTION * 2:
            self.V = None if fk is None or rank + self.oversample > self.p else \
                self._from_exact(fk[1])
            return _Point(dense=Zn), nuc, rank
        self.V = self._from_exact(fk[1])
        return _Point(dense=Zn, F=fk[0], R=fk[1]), nuc, rank


def _lowrank_fista(smooth, sub, beta, Z, L, shrink, max_iter, check_every, tol, slack, bar, t0):
    r"""FISTA's loop (the same rule as :func:`fista`'s) on :class:`_Point` iterates: once the prox
    returns low-rank factors, the iterate, the extrapolated point and the differences stay
    factored, the step is an operator (:class:`_StepOp`) and the inner products come from the
    factors (:func:`_inner`, :func:`_sqnorm`) or from the outputs (:math:`\langle B^\top G,D
    \rangle=\langle G,BD\rangle`): no full-size tensor per iteration except at an exact prox.
    Returns ``(Z dense, iterations, converged, history, restarts, L)``."""
    P, p, q = smooth.shape
    limit = p // 2  # factored points up to this summed rank (products cheaper than dense)
    Zp = _Point(dense=Z)
    Y, out_z = Zp, smooth.out(Z)
    out_y = out_z
    tk, rank, nuc, history, converged, restarts, it = 1.0, None, 0.0, [], False, 0, 0
    for it in bar:
        fy, G = smooth._loss_grad(out_y)
        while True:
            Zn, nuc_n, rank = sub(_StepOp(smooth, Y, G, 1.0 / L), beta / L, rank)
            out_n = smooth.out_factored(Zn.F, Zn.R) if Zn.F is not None else None
            out_n = smooth.out(Zn.dense()) if out_n is None else out_n
            fz = smooth._loss_grad(out_n)[0]
            D = _comb(1.0, Zn, -1.0, Y, 3 * limit)
            dd = _sqnorm(D)
            gD = dot(G, out_n - out_y)  # <B^T G, Z+ - Y> = <G, B z+ - B y>
            if fz <= fy + gD + 0.5 * L * dd + slack * max(abs(fy), 1.0) or dd == 0:
                break
            L *= 2.0
        dZ = _comb(1.0, Zn, -1.0, Zp, 2 * limit)
        momentum = _inner(D, dZ) >= 0
        restarts += not momentum
        tk = tk if momentum else 1.0
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
        m = (tk - 1) / t_next
        if momentum and m != 0.0:
            Y = _comb(1.0 + m, Zn, -m, Zp, limit)
            out_y = torch.add(out_n, out_n - out_z, alpha=m)
        else:
            Y, out_y = Zn, out_n
        sub.scale = float(np.sqrt(dd))
        Zp, out_z, tk, nuc = Zn, out_n, t_next, nuc_n
        L *= shrink
        if it % check_every == 0 or it == max_iter:
            gap, value = smooth.rel_gap(None, beta, nuc, U=out_z)
            history.append((it, value, gap, time.perf_counter() - t0))
            bar.set_postfix(value=f"{value:.6g}", rel_gap=f"{gap:.1e}")
            if gap <= tol:
                converged = True
                break
    return Zp.dense().contiguous(), it, converged, history, restarts, L


#: entries of the stacked design (rows x P m) up to which FISTA builds it (``design='auto'``)
DESIGN_LIMIT = 2**25


def fista(head, beta: float, max_iter: int = 20000, tol: float = 1e-6, check_every: int = 10,
          L0: float = 1.0, shrink: float = 0.9, Z0=None, batch_size=None, gram="auto",
          progress: bool = True, head64=None, design="auto", prox: str = "auto",
          design_limit: int = DESIGN_LIMIT, zero_test: bool = True, subspace_rho: float = 0.5,
          exact_every: int = 50, **power) -> dict:
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

    ``prox``: ``'gram'`` (:func:`svt_gram`: the Gram route, the eigenpairs above the threshold
    only -- by the partial eigensolver :func:`top_eigh` when the previous iterate's rank is small
    --, skipping blocks with Frobenius norm <= the threshold; the SVD where the Gram would be
    inaccurate), ``'auto'`` (the same, and on the CPU design path with wide blocks whose short
    side is at least :data:`SUBSPACE_MIN`, the loop :func:`_lowrank_fista` -- iterates kept as
    low-rank factors, the step never formed -- with the inexact warm-started subspace prox
    :func:`svt_subspace` once the rank is small, accepted while its error bound is at most
    ``subspace_rho`` x the previous step's length, the exact prox every ``exact_every``-th
    prox: see :class:`_SubspaceProx`; ``info['proxes']`` counts them) or ``'svd'``
    (:func:`svt`, a full SVD of every block).  ``gram=False, design=False, prox='svd',
    zero_test=False`` is the reference path (the solver before these shortcuts).
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
    if prox not in ("auto", "gram", "svd"):
        raise ValueError(f"prox must be 'auto', 'gram' or 'svd', got {prox!r}")
    if not (np.isfinite(subspace_rho) and subspace_rho >= 0):
        raise ValueError(f"subspace_rho must be a finite number >= 0, got {subspace_rho}")
    if int(exact_every) != exact_every or exact_every < 1:
        raise ValueError(f"exact_every must be an integer >= 1, got {exact_every}")
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
    fast_prox = prox in ("auto", "gram") and not head.complex
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
    sub = (_SubspaceProx(head.shape, zd, subspace_rho, exact_every)
           if prox == "auto" and fast_prox and linear and dev.type == "cpu" and p <= q
           and p >= SUBSPACE_MIN and smooth.B.numel() <= FACTORED_DESIGN_LIMIT else None)
    buf = ({name: torch.empty_like(Z, memory_format=torch.contiguous_format)
            for name in ("g", "step", "spare", "D", "dZ")}
           if linear and fast_prox and dev.type == "cpu" and sub is None else None)

    def out_of(name):
        return {"out": buf[name]} if buf else {}
    if sub is not None:  # low-rank iterates, the step as an operator (see _lowrank_fista)
        Z, it, converged, history, restarts, L = _lowrank_fista(
            smooth, sub, beta, Z, L, shrink, max_iter, check_every, tol, slack, bar, t0)
    else:
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
                            gD = dot(smooth.G, out_n - out_y)  # <B^T G, D> = <G, B z+ - B y>
                        else:
                            fz = smooth.f(Zn)
                            gD = dot(gy, D)
                        ok = fz <= fy + gD + 0.5 * L * dd + slack * max(abs(fy), 1.0)
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
                    if linear:
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
                      "design": bool(design),
                      "prox": ("svd" if not fast_prox else "gram" if sub is None
                               or not sub.stats["subspace"] else "gram+subspace"),
                      "proxes": dict(sub.stats) if sub is not None else None,
                      "lowrank": sub is not None})
