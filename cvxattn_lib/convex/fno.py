r"""Fourier token mixing with weight decay: when it is a ridge problem, a nuclear norm, or a block
nuclear norm.  The programs of this module are **derived in this collection** (the paper's
abstract says it analyses FNO with block nuclear-norm regularisation; its exact model and
statement were not available to us), and each is checked numerically in the tests.

Samples :math:`X\in\mathbb{R}^{s\times d}`, token outputs (s, c); :math:`\hat x=\mathrm{rfft}(x)`
over tokens has K = s//2 + 1 modes.  Mode w is *self-conjugate* (w = 0, and w = s/2 for even s)
or *paired* (the full DFT also holds its conjugate at s - w); multiplicity :math:`\mu_w` = 1 or 2.

**The FNO layer of Li et al. (2021): a ridge problem.**  Its spectral convolution keeps one
complex channel matrix :math:`R_w` (d, c) per retained mode, :math:`f(X)=\mathrm{irfft}_w(\hat
X[w]R_w)`.  It is linear in its weights, so weight decay :math:`\tfrac\beta2\sum_w\|R_w\|_F^2`
gives a convex *Frobenius* (ridge) problem, solved in closed form mode by mode
(:func:`fno_layer_ridge`, checked against CVXPY by :func:`fno_layer_program`); no nuclear norm,
and the solution is generically full rank.

**Shared-kernel circular convolution** (``mixing='circulant'``).
:math:`f(X)=\sum_j\mathrm{circ}(k_j)XB_j`, :math:`\mathrm{circ}(k)[t,u]=k[(t-u)\bmod s]`,
``k_j`` (s,), ``B_j`` (d, c): a global convolution factored into m kernels times channel maps,
computed with FFTs (:math:`\mathrm{circ}(k)x=\mathrm{irfft}(\hat k\,\hat x)`).  With
:math:`Z=\sum_jk_j\mathrm{vec}(B_j)^\top` (s x dc, row-major vec, :math:`Z[r,ac+b]`),
:math:`f(X)[t,b]=\sum_{r,a}X[(t-r)\bmod s,a]\,Z[r,ac+b]`: linear in Z, and weight decay on
:math:`(k_j,B_j)` gives one nuclear norm, :math:`\min L(\mathcal{A}(Z))+\beta\|Z\|_*`.  In the
Fourier basis (F the unitary DFT over tokens) :math:`\|FZ\|_*=\|Z\|_*`, and row w of
:math:`\sqrt s\,FZ` is :math:`\mathrm{vec}(R_w)`, :math:`R_w=\sum_j\hat k_j[w]B_j`, the channel map
of mode w.  So this head pays one nuclear norm of the matrix whose rows are all the
:math:`\mathrm{vec}(R_w)/\sqrt s` -- low rank *across* frequencies (shared kernels).

**Two-layer per-mode channel map (AFNO-like; defined in this collection)**
(``mixing='spectral'``).  :math:`f(X)=\mathrm{irfft}_w(\hat X[w]W_{1w}W_{2w})`: the FNO layer
with each mode's channel matrix factored through m hidden channels.  "AFNO-like" because AFNO
(Guibas et al. 2022) mixes channels in the Fourier domain with a two-layer MLP; AFNO shares that
MLP across modes and adds block-diagonal weights, a nonlinearity and soft-thresholding, none of
which is modelled here (here every mode has its own weights, as in the FNO).  :math:`W_{1w}`
(d, m), :math:`W_{2w}` (m, c) complex, real at self-conjugate modes, weight decay
:math:`\tfrac\beta2\sum_{w<K}\|W_{1w}\|_F^2+\|W_{2w}\|_F^2` (each rfft mode once).  Minimising
the penalty over the factorisations of :math:`R_w=W_{1w}W_{2w}` gives :math:`\|R_w\|_*` (complex
SVD; real at self-conjugate modes), once :math:`m\ge\max_w\mathrm{rank}R_w`.  The token-domain
program is :math:`\min L(\sum_w\mathrm{Re}(P_wR_w))+\beta\sum_{w<K}\|R_w\|_*`, with
:math:`P_w[(i,t),a]=\tfrac{\mu_w}{s}e^{2\pi iwt/s}\hat X_i[w,a]` (the irfft written out): the
block nuclear norm belongs to this two-layer map, not to the one-layer FNO.

*Parseval.*  With the orthonormal rfft :math:`\tilde x=\mathrm{rfft}(x)/\sqrt s`, a real sequence
has :math:`\sum_t y_t^2=\sum_{w<K}\mu_w|\tilde y_w|^2` (a paired mode stands for itself and its
conjugate).  The head's output at mode w is :math:`\tilde X_wR_w` (rows: samples), so for the
squared loss the program **decouples over modes**:

.. math:: p^\star=\sum_{w<K}\mu_w\min_{R}\Big[\tfrac12\|\tilde X_wR-\tilde Y_w\|_F^2
          +\frac{\beta}{\mu_w}\|R\|_*\Big],

a block nuclear norm whose weights, relative to each block's orthonormal data fit, are
:math:`\beta/\mu_w`: β at the self-conjugate modes, β/2 at the paired ones.  Equivalently, over
the full DFT (s blocks, :math:`R_{s-w}=\bar R_w`, unit loss weights) the regulariser is
:math:`\beta\sum_{w<s}\|R_w\|_*/\mu_w`: each copy of a paired mode pays half.
(:func:`spectral_blocks_program` solves the blocks one by one.)

All three compute the same functions (any conjugate-symmetric :math:`R_w` is
:math:`\sum_j\hat k_j[w]B_j` for enough kernels); they differ in the regulariser: the FNO layer
pays :math:`\tfrac\beta2\sum_w\|R_w\|_F^2` (ridge), the circular convolution
:math:`\beta\|[\mathrm{vec}R_w]_w\|_*/\sqrt s`, the two-layer per-mode map
:math:`\beta\sum_w\|R_w\|_*`.  The block norm is *not* the circular convolution's regulariser
(for d = c = 1 it is an l1 norm over frequencies against an l2 norm).

**Complex variables.**  Paired modes use ``cp.Variable(complex=True)`` with ``cp.normNuc``; CVXPY
embeds a complex matrix as :math:`\begin{bmatrix}\mathrm{Re}&-\mathrm{Im}\\ \mathrm{Im}&\mathrm{Re}
\end{bmatrix}`, whose nuclear norm is twice the complex one, and divides by 2 (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from ..cvxpy_solve import solve
from ..nonconvex.mixer import FNO_MIXINGS, self_conjugate
from ..validation import choice, positive_scalar
from .attention import _check
from .lifted import LiftedFit, lifted_program, pool_tokens
from .mlp import cvx_loss, factor, nuclear_norm


def circulant(k: np.ndarray) -> np.ndarray:
    """circ(k) (s, s) with circ(k)[t, u] = k[(t - u) mod s]."""
    s = k.shape[0]
    return k[(np.arange(s)[:, None] - np.arange(s)[None, :]) % s]


def lift_fno(k: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Z = sum_j k_j vec(B_j)^T for kernels k (m, s), channel maps B (m, d, c): shape (s, d c)."""
    return k.T @ B.reshape(B.shape[0], -1)


def parseval_multiplicity(s: int) -> np.ndarray:
    """(K,) multiplicities mu_w: 1 at the self-conjugate rfft modes, 2 at the paired ones."""
    return np.where(self_conjugate(s), 1, 2)


def circulant_design(X: np.ndarray) -> np.ndarray:
    """D (n s, s d) with entry X_i[(t - r) mod s, a] at row (i, t), column (r, a): the outputs
    of the circulant head are D @ Z.reshape(s d, c) (for CVXPY; numeric paths use FFTs)."""
    n, s, d = X.shape
    return X[:, (np.arange(s)[:, None] - np.arange(s)[None, :]) % s, :].reshape(n * s, s * d)


def circulant_outputs(X: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Token outputs (n s, c) of the lifted circulant head Z (s, d c), by FFT."""
    n, s, d = X.shape
    Zh = np.fft.rfft(Z.reshape(s, d, -1), axis=0)
    Oh = np.einsum("nwa,wab->nwb", np.fft.rfft(X, axis=1), Zh)
    return np.fft.irfft(Oh, n=s, axis=1).reshape(n * s, -1)


def circulant_adjoint(X: np.ndarray, V: np.ndarray) -> np.ndarray:
    r"""A^*(V) (s, d c): :math:`\sum_{i,t}X_i[(t-r)\bmod s,a]V_i[t,b]`, a circular
    cross-correlation, by FFT."""
    n, s, d = X.shape
    Vh = np.fft.rfft(V.reshape(n, s, -1), axis=1)
    G = np.einsum("nwa,nwb->wab", np.conj(np.fft.rfft(X, axis=1)), Vh)
    return np.fft.irfft(G, n=s, axis=0).reshape(s, -1)


def circulant_to_spectral(Z: np.ndarray, d: int) -> np.ndarray:
    """The per-mode channel maps R_w = sum_j rfft(k_j)[w] B_j (K, d, c) of a lifted circulant
    head Z (s, d c): the same function as the spectral head with these R_w."""
    s = Z.shape[0]
    return np.fft.rfft(Z.reshape(s, d, -1), axis=0)


def spectral_outputs(X: np.ndarray, R) -> np.ndarray:
    """Token outputs (n s, c) of the spectral head with channel maps R (K, d, c), by FFT."""
    n, s, d = X.shape
    Oh = np.einsum("nwa,wab->nwb", np.fft.rfft(X, axis=1), np.asarray(R))
    return np.fft.irfft(Oh, n=s, axis=1).reshape(n * s, -1)


def spectral_adjoint(X: np.ndarray, V: np.ndarray) -> list[np.ndarray]:
    r"""A_w^*(V) = P_w^H V = (mu_w/s) sum_i conj(Xhat_i[w])^T Vhat_i[w] (d, c) per mode (real at
    the self-conjugate modes, where R_w is real)."""
    n, s, d = X.shape
    Vh = np.fft.rfft(V.reshape(n, s, -1), axis=1)
    G = np.einsum("nwa,nwb->wab", np.conj(np.fft.rfft(X, axis=1)), Vh)
    G *= (parseval_multiplicity(s) / s)[:, None, None]
    return [G[w].real if sc else G[w] for w, sc in enumerate(self_conjugate(s))]


def spectral_design(X: np.ndarray) -> list[np.ndarray]:
    r"""P_w (n s, d) per rfft mode, :math:`P_w[(i,t),a]=\tfrac{\mu_w}{s}e^{2\pi iwt/s}\hat X_i[w,a]`:
    the outputs are :math:`\sum_w\mathrm{Re}(P_wR_w)` (real P_w at self-conjugate modes)."""
    n, s, d = X.shape
    Xh = np.fft.rfft(X, axis=1)
    mu = parseval_multiplicity(s)
    out = []
    for w, sc in enumerate(self_conjugate(s)):
        phase = np.exp(2j * np.pi * w * np.arange(s) / s)
        P = (mu[w] / s) * phase[None, :, None] * Xh[:, None, w, :]
        out.append(P.real.reshape(n * s, d) if sc else P.reshape(n * s, d))
    return out


def spectral_blocks(X: np.ndarray, Y: np.ndarray):
    """Orthonormal rfft data per mode: X~ (K, n, d), Y~ (K, n, c) and mu (K,), so that
    0.5 ||f(X) - Y||^2 = sum_w (mu_w / 2) ||X~_w R_w - Y~_w||^2 (Parseval)."""
    Xt = np.fft.rfft(X, axis=1, norm="ortho").transpose(1, 0, 2)
    Yt = np.fft.rfft(Y, axis=1, norm="ortho").transpose(1, 0, 2)
    return Xt, Yt, parseval_multiplicity(X.shape[1])


@dataclass
class FNOFit(LiftedFit):
    """Solution of the convex program of a factored Fourier head (shared-kernel circular
    convolution or two-layer per-mode channel map), with recovery and certificate.  ``Z`` is
    ``[Z]`` (s, d c) for circulant, the K channel maps ``R_w`` (d, c) for spectral (complex at
    paired modes).  Outputs and adjoints are computed with FFTs."""

    mixing: str
    loss: str
    beta: float
    shape: tuple  # (n, s, d, c)
    X: np.ndarray = field(repr=False)
    Y: np.ndarray = field(repr=False)  # (n s, c) targets, or (n,) labels with pooling
    Z: list = field(repr=False)
    solver_value: float
    status: str
    solver: str
    rank_tol: float = 1e-7

    def outputs(self) -> np.ndarray:
        if self.mixing == "circulant":
            return circulant_outputs(self.X, self.Z[0])
        return spectral_outputs(self.X, self.Z)

    def adjoint(self, V: np.ndarray) -> list[np.ndarray]:
        if self.mixing == "circulant":
            return [circulant_adjoint(self.X, V)]
        return spectral_adjoint(self.X, V)

    def weights(self) -> dict[str, np.ndarray]:
        """A head reaching :attr:`value`: circulant ``k`` (m, s), ``B`` (m, d, c) with m = rank Z;
        spectral complex ``W1`` (K, d, m), ``W2`` (K, m, c) with m = max_w rank R_w (modes of
        lower rank padded with zero channels)."""
        n, s, d, c = self.shape
        tol = self.rank_tol * max(1.0, max(np.linalg.norm(Zj, 2) for Zj in self.Z))
        if self.mixing == "circulant":
            U, V = factor(self.Z[0], tol)
            return {"k": U.T.copy(), "B": V.reshape(-1, d, c)}
        parts = [factor(R, tol) for R in self.Z]
        m = max(1, max(U.shape[1] for U, _ in parts))
        W1 = np.zeros((len(parts), d, m), complex)
        W2 = np.zeros((len(parts), m, c), complex)
        for w, (U, V) in enumerate(parts):
            W1[w, :, :U.shape[1]], W2[w, :U.shape[1]] = U, V
        return {"W1": W1, "W2": W2}

    @property
    def n_heads(self) -> int:
        """Kernels (circulant: rank Z) or hidden channels per mode (spectral: max_w rank R_w)."""
        w = self.weights()
        return w["k"].shape[0] if self.mixing == "circulant" else w["W1"].shape[2]


def _spectral_program(X, Yf, loss, beta, solver):
    n, s, d = X.shape
    c = Yf.shape[1] if loss == "squared" else int(Yf.max()) + 1
    Rv, out = [], 0
    for P, sc in zip(spectral_design(X), self_conjugate(s)):
        R = cp.Variable((d, c)) if sc else cp.Variable((d, c), complex=True)
        Rv.append(R)
        out = out + (P @ R if sc else cp.real(P @ R))
    if loss == "cross_entropy":
        out = pool_tokens(out, n, s)
    problem = cp.Problem(cp.Minimize(cvx_loss(out, Yf, loss)
                                     + beta * sum(nuclear_norm(R) for R in Rv)))
    value = solve(problem, solver=solver)
    return [np.array(R.value, float if sc else complex, copy=True)
            for R, sc in zip(Rv, self_conjugate(s))], value, problem


def fit_fno(X, Y, beta, mixing: str = "circulant", loss: str = "squared",
            solver: str | None = None) -> FNOFit:
    """Solve the convex program (derived in this collection) of a factored Fourier token-mixing
    head with weight decay ``beta``: the shared-kernel circular convolution (``'circulant'``) or
    the two-layer per-mode channel map, AFNO-like (``'spectral'``).  For the one-layer FNO of
    Li et al. (a ridge problem) see :func:`fno_layer_ridge`.

    ``X`` (n, s, d); ``Y`` (n, s, c) token targets (squared loss) or integer labels (n,)
    (cross-entropy on mean-pooled logits).  ``mixing``: ``'circulant'`` (one nuclear norm of
    Z (s, d c)) or ``'spectral'`` (one nuclear norm per rfft mode: the block nuclear norm).
    Returns an :class:`FNOFit`.
    """
    X, Yf, c = _check(X, Y, loss)
    beta = positive_scalar("beta", beta)
    mixing = choice("mixing", mixing, FNO_MIXINGS)
    n, s, d = X.shape
    if mixing == "circulant":
        Z, value, problem = lifted_program([circulant_design(X)], [(s, d * c)], Yf, loss, beta, n,
                                           s, solver)
    else:
        Z, value, problem = _spectral_program(X, Yf, loss, beta, solver)
    return FNOFit(mixing=mixing, loss=loss, beta=beta, shape=(n, s, d, c), X=X, Y=Yf, Z=Z,
                  solver_value=value, status=problem.status,
                  solver=problem.solver_stats.solver_name)


def spectral_blocks_program(X, Y, beta, solver: str | None = None) -> list[tuple[float, np.ndarray]]:
    r"""The spectral program solved one rfft mode at a time (squared loss): for each w,
    :math:`\min_R\tfrac{\mu_w}2\|\tilde X_wR-\tilde Y_w\|_F^2+\beta\|R\|_*` (R real at
    self-conjugate modes).  Returns ``(value_w, R_w)`` per mode; the values sum to
    ``fit_fno(X, Y, beta, 'spectral').value`` (Parseval, see the module docstring)."""
    X, Yf, c = _check(X, Y, "squared")
    beta = positive_scalar("beta", beta)
    n, s, d = X.shape
    Xt, Yt, mu = spectral_blocks(X, Yf.reshape(n, s, c))
    out = []
    for w, sc in enumerate(self_conjugate(s)):
        R = cp.Variable((d, c)) if sc else cp.Variable((d, c), complex=True)
        A, B = (Xt[w].real, Yt[w].real) if sc else (Xt[w], Yt[w])
        problem = cp.Problem(cp.Minimize(0.5 * mu[w] * cp.sum_squares(A @ R - B)
                                         + beta * nuclear_norm(R)))
        out.append((solve(problem, solver=solver), np.array(R.value, copy=True)))
    return out


def _retained_modes(s: int, modes) -> int:
    """The number of retained (lowest) rfft modes, 1 <= modes <= s//2 + 1 (default: all)."""
    K = s // 2 + 1
    if modes is None:
        return K
    if isinstance(modes, bool) or not isinstance(modes, (int, np.integer)) or not 1 <= modes <= K:
        raise ValueError(f"modes must be an integer in [1, {K}] (the rfft modes of s = {s} tokens), "
                         f"got {modes!r}")
    return int(modes)


def fno_layer_objective(X, Y, R, beta) -> float:
    r"""The weight-decayed objective of the FNO layer (Li et al. 2021) with channel maps ``R``:
    :math:`\tfrac12\|\mathrm{irfft}_w(\hat X[w]R_w)-Y\|_F^2+\tfrac\beta2\sum_w\|R_w\|_F^2`
    (each rfft mode once, complex modulus; ``R`` (K, d, c), zero at the modes not retained)."""
    X, Yf, c = _check(X, Y, "squared")
    beta = positive_scalar("beta", beta)
    n, s, d = X.shape
    R = np.asarray(R)
    if R.shape != (s // 2 + 1, d, c):
        raise ValueError(f"R must have shape {(s // 2 + 1, d, c)} (K, d, c), got {R.shape}")
    fit = 0.5 * np.sum((spectral_outputs(X, R) - Yf) ** 2)
    return float(fit + 0.5 * beta * np.sum(np.abs(R) ** 2))


def fno_layer_ridge(X, Y, beta, modes=None) -> np.ndarray:
    r"""Closed-form optimum of the FNO layer of Li et al. (2021) with weight decay: the spectral
    convolution :math:`f(X)=\mathrm{irfft}_w(\hat X[w]R_w)` with **one** channel matrix
    :math:`R_w\in\mathbb{C}^{d\times c}` per retained rfft mode :math:`w<` ``modes`` (real at the
    self-conjugate modes), trained on
    :math:`\tfrac12\|f(X)-Y\|_F^2+\tfrac\beta2\sum_w\|R_w\|_F^2`.

    The model is linear in its weights, so this is already convex: no lifting, no nuclear norm.
    By Parseval (module docstring) it decouples into one **ridge** regression per mode,
    :math:`\min_R\tfrac{\mu_w}2\|\tilde X_wR-\tilde Y_w\|_F^2+\tfrac\beta2\|R\|_F^2`, solved by

    .. math:: R_w=(\mu_w\tilde X_w^H\tilde X_w+\beta I)^{-1}\mu_w\tilde X_w^H\tilde Y_w,

    a shrunken least-squares map: its singular values shrink, none is set to zero (generically
    full rank, unlike the two-layer per-mode program).  Returns ``R`` (K, d, c) complex, zero at
    the modes not retained.  (The layer's pointwise term and activation are left out.)
    """
    X, Yf, c = _check(X, Y, "squared")
    beta = positive_scalar("beta", beta)
    n, s, d = X.shape
    kept = _retained_modes(s, modes)
    Xt, Yt, mu = spectral_blocks(X, Yf.reshape(n, s, c))
    R = np.zeros((s // 2 + 1, d, c), complex)
    for w, sc in enumerate(self_conjugate(s)[:kept]):
        A, B = (Xt[w].real, Yt[w].real) if sc else (Xt[w], Yt[w])
        R[w] = np.linalg.solve(mu[w] * A.conj().T @ A + beta * np.eye(d), mu[w] * A.conj().T @ B)
    return R


def fno_layer_program(X, Y, beta, modes=None, solver: str | None = None):
    """The same FNO-layer problem as :func:`fno_layer_ridge`, solved by CVXPY in the token
    domain (the irfft written out with :func:`spectral_design`, a Frobenius penalty per mode):
    a check of the closed form that does not use Parseval.  Returns ``(R (K, d, c), value)``."""
    X, Yf, c = _check(X, Y, "squared")
    beta = positive_scalar("beta", beta)
    n, s, d = X.shape
    kept = _retained_modes(s, modes)
    Rv, out, penalty = [], 0, 0
    for P, sc in list(zip(spectral_design(X), self_conjugate(s)))[:kept]:
        R = cp.Variable((d, c)) if sc else cp.Variable((d, c), complex=True)
        Rv.append(R)
        out = out + (P @ R if sc else cp.real(P @ R))
        penalty = penalty + (cp.sum_squares(R) if sc else
                             cp.sum_squares(cp.real(R)) + cp.sum_squares(cp.imag(R)))
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(out - Yf) + 0.5 * beta * penalty))
    value = solve(problem, solver=solver)
    R = np.zeros((s // 2 + 1, d, c), complex)
    for w, Rw in enumerate(Rv):
        R[w] = Rw.value
    return R, value


@dataclass
class FNOLayerFit:
    """The weight-decayed FNO layer of Li et al. (2021), solved in closed form (ridge per mode,
    :func:`fno_layer_ridge`): channel maps ``R`` (K, d, c), zero at the modes not retained."""

    beta: float
    modes: int
    shape: tuple  # (n, s, d, c)
    X: np.ndarray = field(repr=False)
    Y: np.ndarray = field(repr=False)  # (n s, c)
    R: np.ndarray = field(repr=False)
    loss: str = "squared"

    def outputs(self) -> np.ndarray:
        """Token outputs (n s, c) on the training samples."""
        return spectral_outputs(self.X, self.R)

    prediction = outputs

    @property
    def value(self) -> float:
        """The optimal objective :math:`\\tfrac12\\|f(X)-Y\\|_F^2+\\tfrac\\beta2\\sum_w\\|R_w\\|_F^2`."""
        n, s, d, c = self.shape
        return fno_layer_objective(self.X, self.Y.reshape(n, s, c), self.R, self.beta)

    def singular_values(self) -> list[np.ndarray]:
        """Singular values of each retained R_w (descending)."""
        return [np.linalg.svd(R, compute_uv=False) for R in self.R[:self.modes]]


def fit_fno_layer(X, Y, beta, modes=None) -> FNOLayerFit:
    """The FNO layer of Li et al. (2021) with weight decay ``beta``, ``modes`` lowest rfft modes
    retained (default all), solved in closed form: see :func:`fno_layer_ridge`."""
    X, Yf, c = _check(X, Y, "squared")
    n, s, d = X.shape
    kept = _retained_modes(s, modes)
    R = fno_layer_ridge(X, Yf.reshape(n, s, c), beta, kept)
    return FNOLayerFit(beta=float(beta), modes=kept, shape=(n, s, d, c), X=X, Y=Yf, R=R)
