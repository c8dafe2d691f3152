r"""Regularisation paths: the optimum of a convex program over a grid of β, each certified.

Algorithm (the glmnet / scikit-learn ``lasso_path`` pattern):

1. :math:`\beta_{\max}=\max_j\|\mathcal{A}_j^*(\nabla L(0))\|_2`, the smallest β at which
   :math:`Z=0` is optimal (:func:`.certify.beta_max`); every grid point at or above it has
   :math:`Z^\star=0`, certified without iterating;
2. the grid is walked from large β to small; each point starts from the solutions before it
   (a warm start: neighbouring optima are close, so few iterations are needed) and stops at the
   certified relative gap ``tol``.  Squared-loss heads small enough for their Gram matrix
   :math:`H` (P m <= 4096 rows, as :func:`.fista.fista` decides) use ADMM (:func:`admm_quadratic`),
   whose exact Z-step :math:`(H+\rho I)^{-1}` keeps small β fast where FISTA's 1/L steps crawl
   (β = 1e-3 on notebook 02's toy: FISTA 20 000 iterations, 15 s, gap 1.6e-7; ADMM, warm-started
   on the slider's path, 160 iterations, about 4 ms), in numpy on one BLAS thread (the products
   are small: on a shared CPU threads cost more than they give); its warm start extrapolates the
   last two optima and duals linearly in log β (:func:`_admm_start`); other heads use FISTA
   (:func:`.fista.fista`);
3. each solution is returned as the fit of the matching ``cal.convex`` program
   (:class:`~cvxattn_lib.convex.attention.AttentionFit`, ``MixerFit``, ``FNOFit``, ``MLPFit``), whose
   float64 weak-duality certificate (recomputed from the data, not taken from the solver) gives the
   certified gap of what is drawn.

The exact ReLU program of a two-layer network (``kind='mlp', activation='relu'``) has cone
constraints that these proximal solvers do not handle; its path is solved with CVXPY on a working
set of patterns (:mod:`.relu_path`): at each grid point the program restricted to the previous
support and the strong rule's candidates, then an exact KKT check of every other pattern's block
(its cone dual norm at the residual, :mod:`cvxattn_lib.convex.relu_cones`), violators added and
re-solved until none is left; the solution padded with zeros is the full program's optimum, and
the ``MLPFit``'s certificate over all patterns says so.  On notebook 01's spiral (1561 patterns)
its 41 positions took 1.7x one solve of the full program in ``benchmarks/bench_slider_resolve.py``
(28.8x with one full solve per position, as before).

Paths are cached on disk (``cache=True``: under ``data/cache/paths/``, keyed by a SHA-1 of the data,
gates, grid and options, written atomically) and loaded instead of recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..validation import choice, positive_scalar, seed_value
from .heads import HEADS

PATH_VERSION = 3  # bump when what a cached path holds, or how it is computed, changes
KINDS = ("mlp", "self_attention", "mixer", "fno")


@dataclass
class RegularisationPath:
    """Optima over a β grid, ascending.  ``fits[k]`` is the ``cal.convex`` fit at ``betas[k]``
    (``value``, ``certificate()``, ``weights()``, ...); ``values``, ``lower_bounds`` and
    ``rel_gaps`` are its float64 certificate; ``iterations`` the solver's iterations there (0 for
    Z = 0 at or above ``beta_max``; for the ReLU program, the CVXPY solves of its working set);
    ``seconds`` the time each point took (0 when loaded)."""

    kind: str
    activation: str
    loss: str
    method: str  # "admm" or "fista" (torch), or "cvxpy" (the exact ReLU program, working set)
    betas: np.ndarray
    values: np.ndarray
    lower_bounds: np.ndarray
    rel_gaps: np.ndarray
    iterations: np.ndarray
    seconds: np.ndarray
    beta_max: float
    fits: list = field(repr=False)
    device: str = "cpu"
    cached: bool = False  # loaded from the on-disk cache
    cache_file: str | None = None
    wall_time: float = 0.0

    def index(self, beta: float, rtol: float = 1e-6) -> int | None:
        """Position of ``beta`` in the grid (relative tolerance ``rtol``), or None if off the grid."""
        beta = float(beta)
        k = int(np.argmin(np.abs(np.log(self.betas) - np.log(beta))))
        return k if abs(self.betas[k] - beta) <= rtol * beta else None

    def fit(self, beta: float):
        """The fit at grid point ``beta``; a ``KeyError`` naming the grid if it is not on it."""
        k = self.index(beta)
        if k is None:
            raise KeyError(f"beta={beta:g} is not on the path's grid ({len(self.betas)} values from "
                           f"{self.betas[0]:.3g} to {self.betas[-1]:.3g})")
        return self.fits[k]

    def nearest(self, beta: float):
        """The fit at the grid point nearest to ``beta`` on a log scale (a warm start)."""
        return self.fits[int(np.argmin(np.abs(np.log(self.betas) - np.log(float(beta)))))]


def log_grid(low: float, high: float, step: float) -> np.ndarray:
    """The positions of a base-10 log slider from ``low`` to ``high`` in exponent steps ``step``:
    ``10 ** (log10(low) + k step)``, ascending (what ``ipywidgets.FloatLogSlider`` can take)."""
    lo, hi = np.log10(positive_scalar("low", low)), np.log10(positive_scalar("high", high))
    step = positive_scalar("step", step)
    if hi < lo:
        raise ValueError(f"high ({high:g}) must be >= low ({low:g})")
    k = int(np.floor((hi - lo) / step + 1e-9))
    return 10.0 ** (lo + step * np.arange(k + 1))


# -- the cache -----------------------------------------------------------------------------------
def _digest(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()


def cache_dir() -> Path:
    """Where paths are cached: ``<data root>/cache/paths`` (``cal.data_root()``)."""
    from ..runtime import data_root

    return data_root() / "cache" / "paths"


def _save(file: Path, arrays: dict) -> None:
    """``np.savez`` through a temporary file in the same folder and ``os.replace`` (atomic)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=file.name + ".", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- converting a torch solution into the cal.convex fit -------------------------------------------
def _builder(kind, X, Y, activation, gates, loss):
    """A function (beta, Z list, meta) -> the ``cal.convex`` fit of this program."""
    from ..convex import attention as catt
    from ..convex import fno as cfno
    from ..convex import mixer as cmix
    from ..convex.mlp import MLPFit

    if kind == "mlp":
        from ..validation import targets

        Yf, c = targets(Y, X.shape[0], loss)
        D, G = gates

        def make(beta, Z, status, solver):
            return MLPFit(activation=activation, loss=loss, beta=float(beta), X=X, Y=Yf, D=D, G=G,
                          Z=Z, solver_value=float("nan"), status=status, solver=solver)
        return make
    X3, Yf, c = catt._check(X, Y, loss)
    n, s, d = X3.shape
    if kind == "fno":
        def make(beta, Z, status, solver):
            return cfno.FNOFit(mixing=activation, loss=loss, beta=float(beta), shape=(n, s, d, c),
                               X=X3, Y=Yf, Z=Z, solver_value=float("nan"), status=status,
                               solver=solver)
        return make
    if kind == "self_attention":
        G = np.zeros((0, d, d)) if activation == "linear" else gates
        designs = ([catt.design(X3, None)] if activation == "linear"
                   else [catt.design(X3, M) for M in catt.attention_masks(X3, G)])
        cls = catt.AttentionFit
    else:
        G = np.zeros((0, s, s)) if activation == "linear" else gates
        designs = ([cmix.mixer_design(X3, None)] if activation == "linear"
                   else [cmix.mixer_design(X3, M) for M in cmix.mixer_masks(X3, G)])
        cls = cmix.MixerFit

    def make(beta, Z, status, solver):
        return cls(activation=activation, loss=loss, beta=float(beta), shape=(n, s, d, c), Y=Yf,
                   designs=designs, gates=G, Z=Z, solver_value=float("nan"), status=status,
                   solver=solver)
    return make


def _head_gates(head, kind):
    if kind == "mlp":
        X, Y, D, G, c = head._np
        return D, G
    return head.G


# -- the path ------------------------------------------------------------------------------------
def regularisation_path(kind: str, X, Y, betas=None, n_betas: int = 20, eps: float = 1e-3,
                        activation: str | None = None, gates=None, n_gates=None, seed: int = 0,
                        loss: str = "squared", device=None, tol: float = 1e-7,
                        max_iter: int = 50000, check_every: int = 25, solver: str = "auto",
                        warm_start: bool = True, cache: bool = True, progress: bool = True,
                        status: Callable[[str], None] | None = None,
                        desc: str | None = None) -> RegularisationPath:
    """The certified optima of a convex head over a β grid, from large β (Z = 0) down.

    ``kind``, ``X``, ``Y``, ``activation``, ``gates``, ``n_gates``, ``seed``, ``loss`` as
    :func:`cal.solvers.fit_head` (the same programs as ``cal.convex.fit_*``, same gates for the same
    seed); ``kind='mlp', activation='relu'`` is the exact cone-constrained ReLU program, solved with
    CVXPY (see the module).  ``betas``: the grid (any order, positive); default ``n_betas`` values
    log-spaced from ``eps`` beta_max to beta_max.  ``tol``: the certified relative gap at which FISTA
    stops at each point (FISTA tests it every ``check_every`` iterations, ADMM every 10);
    ``solver``: ``'auto'`` (ADMM where the Gram form applies, else FISTA), ``'admm'`` or ``'fista'``;
    ``warm_start=False`` starts every point from Z = 0 (for comparison).
    ``cache``: load from / save to :func:`cache_dir`, keyed by the data and every option.
    ``progress`` shows a tqdm bar; ``status(text)`` is called before each point (a widget's status
    line).  Returns a :class:`RegularisationPath` (ascending β).
    """
    kind = choice("kind", kind, KINDS)
    loss = choice("loss", loss, ("squared", "cross_entropy"))
    seed = seed_value("seed", seed)
    tol = positive_scalar("tol", tol)
    solver = choice("solver", solver, ("auto", "admm", "fista"))
    activation = HEADS[kind].DEFAULT_ACTIVATION if activation is None else activation
    t0 = time.perf_counter()
    relu = kind == "mlp" and activation == "relu"
    if relu:
        from ..convex.mlp import MLPProgram

        program = MLPProgram(X, Y, "relu", gates=gates, n_gates=n_gates, seed=seed, loss=loss)
        Xa, head, dev, meta_gates = program.X, None, "cpu", (program.D, program.G)
    else:
        from ..runtime import device as pick_device

        dev = pick_device(device)
        head = HEADS[kind].build(X, Y, activation, gates, n_gates, seed, loss, dev, torch.float64)
        Xa, meta_gates = head._np[0], _head_gates(head, kind)
    Ya = np.asarray(Y)
    bmax = None  # computed once, here when the grid needs it, else where the solve does
    if betas is None:
        bmax = _beta_max(head, program if relu else None)
        if bmax <= 0:
            raise ValueError("beta_max is 0 for this data (Z = 0 is optimal at every beta); pass betas")
        betas = bmax * np.logspace(np.log10(positive_scalar("eps", eps)), 0.0, int(n_betas))
    grid = np.sort(np.array([positive_scalar("betas", b) for b in np.ravel(betas)], float))
    if grid.size == 0:
        raise ValueError("betas must hold at least one value")
    gate_arrays = [np.asarray(g) for g in (meta_gates if kind == "mlp" else (meta_gates,))
                   if g is not None]
    key = _digest(PATH_VERSION, kind, activation, loss, seed, tol, max_iter, bool(warm_start),
                  "cvxpy-working-set" if relu else solver, Xa, Ya, grid, *gate_arrays)
    file = cache_dir() / f"{kind}-{activation}-{key[:20]}.npz" if cache else None
    make = _builder(kind, Xa, Ya, activation, meta_gates, loss)
    if file is not None and file.is_file():
        try:
            return _load(file, kind, activation, loss, make, str(dev), t0)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is recomputed and overwritten
    order = np.argsort(-grid)  # large beta first
    fits = [None] * grid.size
    iters, secs = np.zeros(grid.size, int), np.zeros(grid.size)
    bar = tqdm(order, desc=desc or f"path {kind} ({activation})", disable=not progress, leave=False)
    if relu:
        from .relu_path import relu_path

        bmax, Zs, infos = relu_path(program.X, program.Y, program.D, grid, status=status, order=bar)
        for k, (Z, info) in enumerate(zip(Zs, infos)):
            secs[k], iters[k] = info.seconds, info.solves
            fits[k] = make(grid[k], Z, info.status(2 * program.D.shape[1]), info.solver)
        method = "cvxpy"
    else:
        from .fista import _one_blas_thread, fista

        bmax = _beta_max(head, None) if bmax is None else bmax
        P, p, q = head.shape
        c = head.targets(slice(0, 1)).shape[-1]
        spectral = kind == "fno" and activation == "spectral"
        gram_ok = head.loss == "squared" and (spectral or not head.complex) and P * p * q // c <= 4096
        if solver == "admm" and not gram_ok:
            raise ValueError("solver='admm' needs the Gram form (squared loss, P m <= 4096); use "
                             "solver='fista' or 'auto'")
        form = None
        with contextlib.ExitStack() as stack:
            if gram_ok and solver != "fista":
                one = _one_blas_thread()  # small numpy products: BLAS threads cost more than they give
                if one is not None:
                    stack.enter_context(one)
                X3 = head._np[0]
                form = (GramForm.spectral_fno(X3, head.Yt.detach().cpu().numpy().reshape(
                    X3.shape[0], X3.shape[1], -1)) if spectral else GramForm.of_design(head))
            method = "admm" if form is not None else "fista"
            Zt, last = None, []  # last: (β, W, dual) of the last two ADMM points
            for done, k in enumerate(bar):
                if status is not None:
                    status(f"solving β = {grid[k]:.3g} ({done + 1} of {grid.size}), warm-started")
                t = time.perf_counter()
                beta = float(grid[k])
                if beta >= bmax:  # Z = 0 is optimal: no iterations
                    Zt, it, ok = torch.zeros(head.shape, dtype=head.zdtype(), device=dev), 0, True
                elif form is not None:
                    Z0, dual0 = _admm_start(last, beta) if warm_start else (None, None)
                    W, dual, it, ok = admm_quadratic(form, beta, Z0=Z0, dual0=dual0, tol=tol,
                                                     max_iter=max_iter)
                    last = [*last[-1:], (beta, W, dual)]
                    Zt = torch.as_tensor(W, device=dev)
                else:
                    out = fista(head, beta, max_iter=max_iter, tol=tol, progress=False,
                                head64=head, Z0=Zt if warm_start else None, check_every=check_every)
                    Zt, it, ok = out["Zt"], out["iterations"], out["converged"]
                secs[k] = time.perf_counter() - t
                iters[k] = it
                fits[k] = make(grid[k], _convex_Z(head, Zt), "converged" if ok else "max_iter", method)
                bar.set_postfix(beta=f"{grid[k]:.3g}", it=it)
    path = _assemble(kind, activation, loss, method, grid, fits, iters, secs, bmax, str(dev), t0)
    if file is not None:
        arrays = {"betas": grid, "iterations": iters, "seconds": secs,
                  "beta_max": np.array(bmax), "method": np.array(method)}
        for k, fit in enumerate(fits):
            for j, z in enumerate(fit.Z):
                arrays[f"z{k}_{j}"] = np.asarray(z)
            arrays[f"nz{k}"] = np.array(len(fit.Z))
            arrays[f"status{k}"] = np.array(fit.status)
        _save(file, arrays)
        path.cache_file = str(file)
    return path


class GramForm:
    r"""A squared-loss program in Gram form, :math:`f(Z)=\tfrac12\langle Z,HZ\rangle-
    \mathrm{Re}\langle b,Z\rangle+\tfrac12\|Y\|^2` with Z (P, p, q) flattened to (rows, c) rows,
    H (rows, rows) Hermitian PSD, b (rows, c) (real, or complex for the spectral FNO head, whose
    ``real`` modes must stay real), numpy float64/complex128."""

    def __init__(self, H2, b, yy, shape, real=None):
        self.H2, self.b, self.yy, self.shape = H2, b, float(yy), tuple(shape)
        self.c = b.shape[1]
        self.real = real  # (P,) booleans: blocks kept real (None: all real or no constraint)
        self.eig = None  # (eigenvalues, eigenvectors) of H's range, from :meth:`spectrum`

    @classmethod
    def of_head(cls, quad):
        """From :class:`.fista._Quadratic` (a real head)."""
        return cls(quad.H2.detach().cpu().numpy(), quad.b.reshape(-1, quad.c).detach().cpu().numpy(),
                   quad.yy, quad.shape)

    @classmethod
    def of_design(cls, head):
        r"""From a real head's design (all samples in one block): with B (rows, P m) the stacked
        design :math:`[B_1,\dots,B_P]`, :math:`H=B^\top B`, :math:`b=B^\top Y` (the same H and b as
        ``head.gram``, by one numpy product)."""
        B = head.design(None).detach().cpu().numpy()  # (P, rows, m)
        P, R, m = B.shape
        Bf = np.ascontiguousarray(B.transpose(1, 0, 2).reshape(R, P * m))
        Y = head.targets(None).detach().cpu().numpy().astype(Bf.dtype).reshape(R, -1)
        return cls(Bf.T @ Bf, Bf.T @ Y, float(np.sum(Y * Y)), head.shape)

    def spectrum(self):
        r""":math:`H=Q\Lambda Q^H` (``numpy.linalg.eigh``; eigenvalues below 0 by round-off set to 0),
        computed once and kept."""
        if self.eig is None:
            lam, Q = np.linalg.eigh(self.H2)
            self.eig = (np.maximum(lam, 0.0), Q)
        return self.eig

    @classmethod
    def spectral_fno(cls, X, Y):
        r"""The two-layer per-mode FNO map: by Parseval (:func:`~cvxattn_lib.convex.fno.
        spectral_blocks`) :math:`\tfrac12\|f(X)-Y\|^2=\sum_w\tfrac{\mu_w}2\|\tilde X_wR_w-\tilde Y_w\|^2`,
        so H is block diagonal with blocks :math:`\mu_w\tilde X_w^H\tilde X_w` (d, d) and
        :math:`b_w=\mu_w\tilde X_w^H\tilde Y_w`; the self-conjugate modes are real."""
        from ..convex.fno import spectral_blocks
        from ..nonconvex.mixer import self_conjugate

        Xt, Yt, mu = spectral_blocks(X, Y)
        K, n, d = Xt.shape
        c = Yt.shape[2]
        H2 = np.zeros((K * d, K * d), complex)
        b = np.zeros((K * d, c), complex)
        for w in range(K):
            A = Xt[w]
            H2[w * d:(w + 1) * d, w * d:(w + 1) * d] = mu[w] * A.conj().T @ A
            b[w * d:(w + 1) * d] = mu[w] * A.conj().T @ Yt[w]
        yy = float(sum(mu[w] * np.sum(np.abs(Yt[w]) ** 2) for w in range(K)))
        return cls(H2, b, yy, (K, d, c), real=self_conjugate(X.shape[1]))

    def rel_gap(self, W, s_nuc: float, beta: float) -> float:
        """The weak-duality certificate of :mod:`.certify` at W from Gram quantities: residual
        G = A(W) - Y with ||G||^2 = 2 f and <G, Y> = Re<b, W> - ||Y||^2, dual norm
        max_j ||(HW - b)_j||_2."""
        HW = self.H2 @ W
        bW = float(np.real(np.vdot(self.b, W)))
        f = 0.5 * float(np.real(np.vdot(W, HW))) - bW + 0.5 * self.yy
        GY, GG = bW - self.yy, max(2.0 * f, 1e-300)
        sd = float(np.linalg.norm((HW - self.b).reshape(self.shape), 2, axis=(1, 2)).max())
        t = min(max(-GY / GG, 0.0), beta / sd if sd > 0 else np.inf)
        value = f + beta * s_nuc
        return (value + t * GY + 0.5 * t * t * GG) / max(abs(value), 1e-300)


#: ADMM's ρ at the start of each point, in units of β (see :func:`admm_quadratic`)
RHO_START = 5.0


def _svd(V, real_one: bool):
    """Thin SVD of a (P, p, q) stack; one real block straight through LAPACK's gesdd (numpy's
    own driver, without its stacked wrapper: 2-6 us less of an ADMM iteration's 22-29 us on
    notebook 02's 9 x 6 Z, measured on one thread)."""
    if real_one:
        U, s, Vt, info = _gesdd(V[0], full_matrices=0)
        if info == 0:
            return U[None], s[None], Vt[None]
    return np.linalg.svd(V, full_matrices=False)


def _gesdd(*args, **kwargs):
    from scipy.linalg import lapack

    return lapack.dgesdd(*args, **kwargs)


def admm_quadratic(form: GramForm, beta: float, Z0=None, dual0=None, tol: float = 1e-7,
                   max_iter: int = 50000, rho: float | None = None, alpha: float = 1.6,
                   check_every: int = 10, balance_every: int = 100, mu: float = 5.0):
    r"""ADMM for :math:`\min_Z\tfrac12\langle Z,HZ\rangle-\mathrm{Re}\langle b,Z\rangle+
    \beta\sum_j\|W_j\|_*` subject to Z = W (``form``: a :class:`GramForm`), in numpy on the CPU
    (the Gram form is small: at most 4096 rows).

    With :math:`H=Q\Lambda Q^H` (:meth:`GramForm.spectrum`, computed once and kept on ``form``
    along a path), dual :math:`\Lambda_d` and over-relaxation ``alpha``
    (Boyd et al. 2011, *Distributed optimization and statistical learning via ADMM*), per iteration:

    * :math:`Z\leftarrow(H+\rho I)^{-1}(b+\rho W-\Lambda_d)`, computed as
      :math:`Q\,\mathrm{diag}(1/(\Lambda+\rho))\,Q^H(\cdot)` (divided in the eigenbasis: forming
      :math:`(H+\rho I)^{-1}`, or splitting off H's null space as :math:`v/\rho` minus a correction,
      cancels digits when :math:`\lambda_{\max}/\rho` is large, and the certified gap then stalls
      above 1e-7 at small β on notebook 03's program);
    * :math:`\hat Z=\alpha Z+(1-\alpha)W`;
    * :math:`W\leftarrow\operatorname{SVT}_{\beta/\rho}(\hat Z+\Lambda_d/\rho)` (per block Z_j; the
      real part only on blocks that must stay real);
    * :math:`\Lambda_d\leftarrow\Lambda_d+\rho(\hat Z-W)`;
    * every ``balance_every`` iterations ρ is doubled when the primal residual :math:`\|Z-W\|`
      exceeds ``mu`` times the dual one :math:`\rho\|W-W_{prev}\|`, halved in the opposite case
      (free: the Z-step uses the eigenvalues, nothing is refactored).

    ρ starts at ``RHO_START`` β (or ``rho``): on the programs of notebooks 02 and 03 the fastest
    fixed ρ lies between β and 16β, depending on β, and starting at 5β rather than β took 28-65 %
    fewer iterations along the paths of notebooks 02-04 (same warm start and balancing).
    Stops when the weak-duality certificate at W (feasible, so the bound holds whatever the
    iteration) has relative gap <= ``tol``.  Returns ``(W (P, p, q) numpy, dual, iterations,
    converged)``.
    """
    lam_h, Q = form.spectrum()
    Qh = Q.conj().T
    b, shape, c = form.b, form.shape, form.c
    real_one = shape[0] == 1 and not np.iscomplexobj(b)
    rho = float(rho or RHO_START * beta)
    W = np.zeros_like(b) if Z0 is None else np.asarray(Z0).reshape(-1, c).astype(b.dtype)
    dual = np.zeros_like(b) if dual0 is None else dual0.copy()
    inv = (1.0 / (lam_h + rho))[:, None]
    it, ok = 0, False
    for it in range(1, max_iter + 1):
        Z = Q @ (inv * (Qh @ (b + rho * W - dual)))
        Zh = alpha * Z + (1.0 - alpha) * W
        V = (Zh + dual / rho).reshape(shape)
        if form.real is not None:
            V[form.real] = V[form.real].real
        U, s, Vt = _svd(V, real_one)
        s = np.maximum(s - beta / rho, 0.0)
        W_prev, W = W, ((U * s[:, None, :]) @ Vt).reshape(-1, c)
        dual = dual + rho * (Zh - W)
        if (it % check_every == 0 or it == max_iter) and form.rel_gap(W, float(s.sum()), beta) <= tol:
            ok = True
            break
        if balance_every and it % balance_every == 0:
            r, sr = np.linalg.norm(Z - W), rho * np.linalg.norm(W - W_prev)
            if r > mu * sr or sr > mu * r:
                rho = rho * 2.0 if r > mu * sr else rho / 2.0
                inv = (1.0 / (lam_h + rho))[:, None]
    return W.reshape(shape), dual, it, ok


def _admm_start(last: list, beta: float):
    r"""ADMM's warm start at ``beta`` from the last points of the path ``[(β, W, Λ_d), ...]``:
    the previous optimum W and dual :math:`\Lambda_d` scaled by :math:`\beta/\beta_{prev}` (the
    optimal dual lies in the ball :math:`\|\Lambda_{d,j}\|_2\le\beta`); from two points, the linear
    predictor in log β of W and of :math:`\Lambda_d/\beta` (a continuation method's first-order
    step: on notebook 02's path 14 % fewer iterations than the previous point alone).
    ``(None, None)`` without a previous point (a cold start)."""
    if not last:
        return None, None
    b2, W2, D2 = last[-1]
    if len(last) == 1:
        return W2, D2 * (beta / b2)
    b1, W1, D1 = last[-2]
    t = np.log(beta / b2) / np.log(b2 / b1)
    return W2 + t * (W2 - W1), beta * (D2 / b2 + t * (D2 / b2 - D1 / b1))


def _beta_max(head, program) -> float:
    """beta_max of a torch head, or of the ReLU program: the largest group norm of the cone
    projections of X^T D_j y (``arrangements.relu_dual_norm`` at the residual -y, computed by
    :mod:`cvxattn_lib.convex.relu_cones`)."""
    if program is not None:
        from ..convex.relu_cones import cones_for

        return cones_for(program.X, program.D).dual_norm(-program.Y[:, 0])
    from . import certify as cert

    return float(cert.beta_max(head).value)


def _convex_Z(head, Zt) -> list[np.ndarray]:
    """The torch solution as the ``cal.convex`` fit's list of lifted matrices (float64 numpy; real
    at the self-conjugate modes of the spectral FNO head)."""
    Z = Zt.detach().to(torch.complex128 if Zt.is_complex() else torch.float64).cpu().numpy()
    if not head.complex:
        return [np.array(z, copy=True) for z in Z]
    from ..nonconvex.mixer import self_conjugate

    return [z.real.copy() if sc else z.copy() for z, sc in zip(Z, self_conjugate(head.s))]


def _assemble(kind, activation, loss, method, grid, fits, iters, secs, bmax, dev, t0):
    certs = [f.certificate() for f in fits]
    return RegularisationPath(kind=kind, activation=activation, loss=loss, method=method, betas=grid,
                              values=np.array([c["value"] for c in certs]),
                              lower_bounds=np.array([c["lower_bound"] for c in certs]),
                              rel_gaps=np.array([c["rel_gap"] for c in certs]),
                              iterations=np.asarray(iters), seconds=np.asarray(secs),
                              beta_max=float(bmax), fits=fits, device=dev,
                              wall_time=time.perf_counter() - t0)


def _load(file, kind, activation, loss, make, dev, t0) -> RegularisationPath:
    with np.load(file, allow_pickle=False) as f:
        grid = f["betas"]
        fits = [make(b, [f[f"z{k}_{j}"] for j in range(int(f[f"nz{k}"]))], str(f[f"status{k}"]),
                     str(f["method"]) + " (cached)") for k, b in enumerate(grid)]
        path = _assemble(kind, activation, loss, str(f["method"]), grid, fits, f["iterations"],
                         np.zeros(grid.size), float(f["beta_max"]), dev, t0)
    path.cached, path.cache_file = True, str(file)
    return path

