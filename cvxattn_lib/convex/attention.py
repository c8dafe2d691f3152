r"""Self-attention with weight decay as nuclear-norm programs (Sahiner et al. 2022, Thm. 3.1).

A head j maps a sample :math:`X\in\mathbb{R}^{s\times d}` (s tokens) to
:math:`\sigma_j(XW_{1j}X^\top)\,XW_{2j}`, with :math:`W_{1j}` (d, d) and :math:`W_{2j}` (d, c).

**Lifting (the block/vec convention used everywhere in cvxattn).**  ``vec`` is row-major
(``W.reshape(-1)``): :math:`\mathrm{vec}(W_1)_{ad+k}=W_1[a,k]`, :math:`\mathrm{vec}(W_2)_{lc+b}=W_2[l,b]`.
The lifted matrix :math:`Z=\sum_j\mathrm{vec}(W_{1j})\mathrm{vec}(W_{2j})^\top` is :math:`d^2\times dc`,
and its block :math:`Z^{(k,l)}\in\mathbb{R}^{d\times c}` is :math:`Z^{(k,l)}[a,b]=Z[ad+k,\,lc+b]`.  Then

.. math:: XW_1X^\top XW_2=\sum_{k,l}(X^\top X)[k,l]\;XZ^{(k,l)},

linear in Z, and :math:`\min\tfrac12\sum_j\|W_{1j}\|_F^2+\|W_{2j}\|_F^2` over the heads giving Z is
:math:`\|Z\|_*`.  For the gated ReLU head with gate :math:`G_j`, the mask
:math:`M=1\{XG_jX^\top\ge0\}` replaces :math:`X^\top X` by a per-query Gram matrix
:math:`\Gamma_t=\sum_u M[t,u]\,x_ux_u^\top`.  Row t of the output is then
:math:`\sum_{a,k,l}X[t,a]\Gamma_t[k,l]Z[ad+k,lc+b]`: with :math:`Z` reshaped (row-major) to
:math:`d^3\times c` this is one matrix product ``B @ Z.reshape(d**3, c)``, which is how it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..certificates import NuclearFace, nuclear_face
from ..losses import loss_gradient
from ..validation import as_float_array, choice, positive_scalar, seed_value, token_targets
from .lifted import LiftedFit, lifted_program, square_gates

ATTENTION_ACTIVATIONS = ("linear", "gated_relu")


def lift(W1: np.ndarray, W2: np.ndarray) -> np.ndarray:
    """Z = sum_j vec(W1_j) vec(W2_j)^T for heads W1 (m, d, d), W2 (m, d, c): shape (d^2, d c)."""
    m = W1.shape[0]
    return W1.reshape(m, -1).T @ W2.reshape(m, -1)


def block(Z: np.ndarray, k: int, l: int, d: int, c: int) -> np.ndarray:
    """The block Z^{(k,l)} (d, c): Z^{(k,l)}[a, b] = Z[a d + k, l c + b]."""
    return Z.reshape(d, d, d, c)[:, k, l, :]


def attention_masks(X: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """Masks 1{X_i G_j X_i^T >= 0} for samples X (n, s, d), gates (P, d, d): shape (P, n, s, s)."""
    return np.einsum("ntk,pkl,nul->pntu", X, gates, X) >= 0


def design(X: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    r"""The matrix B (n s, d^3) with prediction = B @ Z.reshape(d^3, c).

    ``mask`` (n, s, s) or ``None`` (linear: every token pair).  Row (i, t), column (a, k, l):
    :math:`X_i[t,a]\,\Gamma_{i,t}[k,l]`, :math:`\Gamma_{i,t}=\sum_u M_i[t,u]x_{iu}x_{iu}^\top`.
    """
    n, s, d = X.shape
    if mask is None:
        gram = np.einsum("nuk,nul->nkl", X, X)
        T = np.einsum("nta,nkl->ntakl", X, gram)
    else:
        gram = np.einsum("ntu,nuk,nul->ntkl", mask.astype(float), X, X)
        T = np.einsum("nta,ntkl->ntakl", X, gram)
    return T.reshape(n * s, d**3)


@dataclass
class AttentionFit(LiftedFit):
    r"""Solution of a self-attention convex program, with recovery and certificate.

    ``prediction()``, ``regulariser()``, ``value``, ``singular_values()``, ``dual_norm(V)``
    (:math:`\max_j\|B_j^\top V\|_2` reshaped to :math:`d^2\times dc`) and ``certificate()`` come
    from :class:`~cvxattn_lib.convex.lifted.LiftedFit`."""

    activation: str
    loss: str
    beta: float
    shape: tuple  # (n, s, d, c)
    Y: np.ndarray = field(repr=False)  # (n s, c) targets, or (n,) labels with pooling
    designs: list = field(repr=False)  # B_j (n s, d^3), one per gate (one for linear)
    gates: np.ndarray = field(repr=False)  # (P, d, d); empty for linear
    Z: list = field(repr=False)  # lifted matrices (d^2, d c), one per gate
    solver_value: float
    status: str
    solver: str
    rank_tol: float = 1e-7

    def weights(self) -> dict[str, np.ndarray]:
        """Heads reaching :attr:`value`: ``W1`` (m, d, d), ``W2`` (m, d, c), and for gated ReLU
        ``G`` (m, d, d), the gate of each head; m = sum of the ranks of the Z_j."""
        n, s, d, c = self.shape
        W1, W2, G = self.factored_heads((d, d), (d, c))
        return {"W1": W1, "W2": W2} | ({"G": G} if G is not None else {})

    @property
    def n_heads(self) -> int:
        """Heads in the recovered network: the sum of the ranks of the lifted matrices."""
        return self.weights()["W1"].shape[0]

    def optimal_face(self) -> NuclearFace:
        """What the dual says about all optima of the linear program with squared loss (see
        :func:`cvxattn_lib.certificates.nuclear_face`): ``rank`` of this Z* is an upper bound on
        the fewest heads that reach p*, equal to it when ``unique()`` holds."""
        if self.activation != "linear" or self.loss != "squared":
            raise ValueError("optimal_face needs activation='linear' and loss='squared', got "
                             f"activation={self.activation!r}, loss={self.loss!r}")
        n, s, d, c = self.shape
        D = self.designs[0]
        dual = self.adjoint(loss_gradient(self.prediction(), self.Y, self.loss))[0]
        return nuclear_face(self.Z[0], dual, lambda Z: D @ Z.reshape(d**3, c), self.beta,
                            rank_tol=self.rank_tol)


def _check(X, Y, loss):
    """X (n, s, d) checked; token targets flattened to (n s, c), or labels (n,); and c."""
    X = as_float_array("X", X, 3)
    n, s, d = X.shape
    Y, c = token_targets(Y, n, s, loss)
    return X, (Y.reshape(n * s, c) if Y.ndim == 3 else Y), c


def attention_gates(d: int, gates=None, n_gates=None, seed: int = 0) -> np.ndarray:
    """Gate matrices (P, d, d): ``gates`` checked, else ``n_gates`` (default 8) N(0,1) draws."""
    return square_gates(d, gates, n_gates, seed)


def fit_self_attention(X, Y, beta, activation: str = "linear", gates=None, n_gates=None,
                       seed: int = 0, loss: str = "squared",
                       solver: str | None = None) -> AttentionFit:
    """Solve the convex program of a self-attention layer with weight decay ``beta``.

    ``X`` (n, s, d); ``Y`` (n, s, c) token targets (squared loss) or integer labels (n,)
    (softmax cross-entropy on mean-pooled logits).  ``activation``: ``'linear'`` (one nuclear
    norm) or ``'gated_relu'`` (one nuclear norm per gate; gates (P, d, d) passed or ``n_gates``
    sampled with ``seed``).  Returns an :class:`AttentionFit`.
    """
    X, Yf, c = _check(X, Y, loss)
    beta = positive_scalar("beta", beta)
    seed = seed_value("seed", seed)
    activation = choice("activation", activation, ATTENTION_ACTIVATIONS)
    n, s, d = X.shape
    if activation == "linear":
        G = np.zeros((0, d, d))
        designs = [design(X, None)]
    else:
        G = attention_gates(d, gates, n_gates, seed)
        designs = [design(X, M) for M in attention_masks(X, G)]
    Z, solver_value, problem = lifted_program(designs, [(d * d, d * c)] * len(designs), Yf, loss,
                                              beta, n, s, solver=solver)
    return AttentionFit(activation=activation, loss=loss, beta=beta, shape=(n, s, d, c), Y=Yf,
                        designs=designs, gates=G, Z=Z, solver_value=solver_value,
                        status=problem.status, solver=problem.solver_stats.solver_name)
