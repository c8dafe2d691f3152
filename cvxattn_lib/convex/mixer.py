r"""Bilinear token-and-channel mixing (the linear-activation form of a Mixer-style block) with
weight decay as nuclear-norm programs.  The programs are **derived in this collection** (the
paper's abstract says it analyses MLP-Mixer with block nuclear-norm regularisation; its exact
model and statement were not available to us) and checked numerically in the tests.

A head j maps a sample :math:`X\in\mathbb{R}^{s\times d}` (s tokens, d channels) to
:math:`A_jXB_j` with token mixing :math:`A_j` (s, s) and channel map :math:`B_j` (d, c); the layer
sums m heads.  Gated ReLU: :math:`(1\{H_jX\ge0\}\odot A_jX)\,B_j`, the (s, d) mask of a fixed gate
:math:`H_j` (s, s) applied elementwise to :math:`A_jX`.

*Relation to MLP-Mixer* (Tolstikhin et al. 2021).  A Mixer block applies a token-mixing MLP to
every channel (a column of X) and then a channel-mixing MLP to every token (a row), each with a
GELU, layer norm and a skip connection.  Drop the layer norms and skips and make the activations
linear: the token MLP collapses to one s x s matrix A, the channel MLP to one d x c matrix B, and
the block computes :math:`AXB`, one head here.  The layer of this module sums m such bilinear
maps, and weight decay is put on :math:`A_j, B_j` themselves.

**Lifting (row-major vec, as in :mod:`.attention`).**  :math:`\mathrm{vec}(A)_{ts+u}=A[t,u]`,
:math:`\mathrm{vec}(B)_{ac+b}=B[a,b]`, and :math:`Z=\sum_j\mathrm{vec}(A_j)\mathrm{vec}(B_j)^\top`
(:math:`s^2\times dc`), i.e. :math:`Z[ts+u,\,ac+b]=\sum_jA_j[t,u]B_j[a,b]`.  Then

.. math:: f(X)[t,b]=\sum_{u,a}M[t,a]\,X[u,a]\,Z[ts+u,\,ac+b]

(:math:`M\equiv1` for the linear head), linear in Z.  With Z reshaped row-major to
:math:`(s^2d)\times c` (row :math:`(ts+u)d+a`) this is ``design(X, M) @ Z.reshape(s*s*d, c)``,
the design having entry :math:`\delta_{tt'}M[t,a]X[u,a]` in row (i, t), column (t', u, a).
Since :math:`\min\tfrac12\sum_j\|A_j\|_F^2+\|B_j\|_F^2` over the heads giving Z is
:math:`\|Z\|_*` (balanced SVD factors), the program is
:math:`\min L(\sum_j\mathcal{A}_j(Z_j))+\beta\sum_j\|Z_j\|_*`, one nuclear norm per gate, exact
once the network has rank(:math:`Z_j^\star`) heads per gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..validation import choice, positive_scalar, seed_value
from .attention import _check
from .lifted import LiftedFit, lifted_program, square_gates
from ..nonconvex.mixer import MIXER_KINDS

MIXER_ACTIVATIONS = MIXER_KINDS


def lift_mixer(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Z = sum_j vec(A_j) vec(B_j)^T for heads A (m, s, s), B (m, d, c): shape (s^2, d c)."""
    m = A.shape[0]
    return A.reshape(m, -1).T @ B.reshape(m, -1)


def mixer_masks(X: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """Masks 1{H_j X_i >= 0} for samples X (n, s, d), gates (P, s, s): shape (P, n, s, d)."""
    return np.einsum("ptu,nua->pnta", gates, X) >= 0


def mixer_design(X: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    r"""The matrix D (n s, s^2 d) with outputs = D @ Z.reshape(s^2 d, c).

    Row (i, t), column (t', u, a): :math:`\delta_{tt'}\,M_i[t,a]\,X_i[u,a]`; ``mask`` (n, s, d)
    or ``None`` (linear head, :math:`M\equiv1`).
    """
    n, s, d = X.shape
    M = np.ones((n, s, d)) if mask is None else mask.astype(float)
    T = np.einsum("tq,nta,nua->ntqua", np.eye(s), M, X)
    return T.reshape(n * s, s * s * d)


def mixer_gates(s: int, gates=None, n_gates=None, seed: int = 0) -> np.ndarray:
    """Gate matrices (P, s, s): ``gates`` checked, else ``n_gates`` (default 8) N(0,1) draws."""
    return square_gates(s, gates, n_gates, seed)


@dataclass
class MixerFit(LiftedFit):
    """Solution of the convex program of bilinear token-and-channel mixing (Mixer-style),
    with recovery and certificate
    (``prediction``, ``value``, ``dual_norm``, ``certificate`` from
    :class:`~cvxattn_lib.convex.lifted.LiftedFit`)."""

    activation: str
    loss: str
    beta: float
    shape: tuple  # (n, s, d, c)
    Y: np.ndarray = field(repr=False)  # (n s, c) targets, or (n,) labels with pooling
    designs: list = field(repr=False)  # D_j (n s, s^2 d), one per gate (one for linear)
    gates: np.ndarray = field(repr=False)  # (P, s, s); empty for linear
    Z: list = field(repr=False)  # lifted matrices (s^2, d c), one per gate
    solver_value: float
    status: str
    solver: str
    rank_tol: float = 1e-7

    def weights(self) -> dict[str, np.ndarray]:
        """Heads reaching :attr:`value`: ``A`` (m, s, s), ``B`` (m, d, c), and for gated ReLU
        ``G`` (m, s, s), the gate of each head; m = sum of the ranks of the Z_j."""
        n, s, d, c = self.shape
        A, B, G = self.factored_heads((s, s), (d, c))
        return {"A": A, "B": B} | ({"G": G} if G is not None else {})

    @property
    def n_heads(self) -> int:
        """Heads in the recovered network: the sum of the ranks of the lifted matrices."""
        return self.weights()["A"].shape[0]


def fit_mixer(X, Y, beta, activation: str = "linear", gates=None, n_gates=None, seed: int = 0,
              loss: str = "squared", solver: str | None = None) -> MixerFit:
    """Solve the convex program (derived in this collection) of bilinear token-and-channel
    mixing :math:`\\sum_jA_jXB_j` (the linear-activation form of a Mixer-style block), or its
    gated-ReLU variant, with weight decay ``beta``.

    ``X`` (n, s, d); ``Y`` (n, s, c) token targets (squared loss) or integer labels (n,)
    (softmax cross-entropy on mean-pooled logits).  ``activation``: ``'linear'`` (one nuclear
    norm) or ``'gated_relu'`` (one per gate; gates (P, s, s) passed, or ``n_gates`` (default 8)
    sampled with ``seed``).  Returns a :class:`MixerFit`.
    """
    X, Yf, c = _check(X, Y, loss)
    beta = positive_scalar("beta", beta)
    seed = seed_value("seed", seed)
    activation = choice("activation", activation, MIXER_ACTIVATIONS)
    n, s, d = X.shape
    if activation == "linear":
        G = np.zeros((0, s, s))
        designs = [mixer_design(X, None)]
    else:
        G = mixer_gates(s, gates, n_gates, seed)
        designs = [mixer_design(X, M) for M in mixer_masks(X, G)]
    Z, value, problem = lifted_program(designs, [(s * s, d * c)] * len(designs), Yf, loss, beta,
                                       n, s, solver)
    return MixerFit(activation=activation, loss=loss, beta=beta, shape=(n, s, d, c), Y=Yf,
                    designs=designs, gates=G, Z=Z, solver_value=value, status=problem.status,
                    solver=problem.solver_stats.solver_name)
