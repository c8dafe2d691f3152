"""Exercises of notebook 05; worked solutions in ``notebooks/solutions/05_*.md``."""

from __future__ import annotations

import numpy as np

from ._base import Exercise, close, implement, number

def _chance_top5() -> float:
    from ..cifar.data import N_CLASSES

    return 5 / N_CLASSES


def _test_recovered_params(fn) -> tuple[bool, str]:
    """Parameters of the network recovered from a rank-r lifted Z, against the library's layer
    with r heads and against the weights recovered from a solved program."""
    from ..convex.attention import fit_self_attention
    from ..nonconvex import MultiHeadAttention

    for d, c, r in [(8, 100, 5), (3, 2, 1), (16, 10, 7), (4, 1, 16)]:
        want = sum(p.numel() for p in MultiHeadAttention(d, r, c, "linear").parameters())
        got = fn(d, c, r)
        if got != want:
            return False, f"for d={d}, c={c}, rank {r} you count {got}, the layer has {want} parameters"
    X = np.random.default_rng(0).standard_normal((6, 3, 2))
    Y = np.random.default_rng(1).standard_normal((6, 3, 2))
    fit = fit_self_attention(X, Y, beta=0.05)
    w = fit.weights()
    want, got = w["W1"].size + w["W2"].size, fn(2, 2, fit.n_heads)
    if got != want:
        return False, (f"a solved program (d=2, c=2) has rank {fit.n_heads}; its recovered heads hold "
                       f"{want} numbers, you count {got}")
    return True, (f"right for four layers and for a solved program (rank {fit.n_heads}, {want} "
                  "parameters)")


def _test_recover_heads(fn) -> tuple[bool, str]:
    """Heads (W1 (m, d, d), W2 (m, d, c)) from a lifted Z: they must give back Z, pay exactly
    ||Z||_* in weight decay, and be rank(Z) in number."""
    from ..convex.attention import lift

    rng = np.random.default_rng(7)
    for d, c, r in [(3, 2, 2), (2, 4, 1), (4, 3, 5)]:
        Z = rng.standard_normal((d * d, r)) @ rng.standard_normal((r, d * c))
        W1, W2 = (np.asarray(a, dtype=float) for a in fn(Z, d, c))
        if W1.shape != (r, d, d) or W2.shape != (r, d, c):
            return False, (f"for a rank-{r} Z with d={d}, c={c} expected W1 {(r, d, d)} and W2 "
                           f"{(r, d, c)}, got {W1.shape} and {W2.shape}")
        ok, message = close(lift(W1, W2), Z, what=f"lift(W1, W2) for d={d}, c={c}")
        if not ok:
            return ok, message
        ok, message = close(0.5 * (np.sum(W1**2) + np.sum(W2**2)), np.linalg.norm(Z, "nuc"),
                            what="the weight decay of your heads against ||Z||_*")
        if not ok:
            return ok, message
    return True, "your heads give back Z, are rank(Z) in number and pay exactly ||Z||_*"


#: the small cross-entropy problem of ``05.beta_zero``
BETA_ZERO_PROBLEM = dict(n=12, s=3, d=2, c=3, heads=1, noise=0.1, seed=5)


def beta_zero_problem():
    """``(X (n, s, d), labels (n,))`` of exercise ``05.beta_zero``: the inputs of
    ``cal.toydata.attention_teacher(**BETA_ZERO_PROBLEM)``, each label the largest mean target."""
    from .. import toydata

    X, Y, _ = toydata.attention_teacher(**BETA_ZERO_PROBLEM)
    return X, Y.mean(axis=1).argmax(axis=1)


def _beta_zero() -> float:
    r"""The smallest beta with Z* = 0 for linear self-attention with softmax cross-entropy on
    mean-pooled logits: :math:`\|\mathcal A^*(\nabla L(0))\|_2` with :math:`\nabla L(0)=\tfrac1c\mathbf 1-E`
    (Z = 0 is optimal iff :math:`-\mathcal A^*(\nabla L(0))\in\beta\,\partial\|0\|_*`, the spectral-norm
    ball of radius beta), from the library's adjoint."""
    import torch

    from ..losses import loss_gradient
    from ..solvers import HEADS, spectral_norms

    X, labels = beta_zero_problem()
    c = int(labels.max()) + 1
    head = HEADS["self_attention"].build(X, labels, "linear", None, None, 0, "cross_entropy", "cpu",
                                         torch.float64)
    G = loss_gradient(np.zeros((labels.size, c)), labels, "cross_entropy")
    return spectral_norms(head, torch.as_tensor(G)).value


def _test_ce_bound(fn) -> tuple[bool, str]:
    """The cross-entropy weak-duality bound sum_i H(t p_i + (1 - t) e_{y_i}), t = min(1, beta / s),
    against ``cal.losses`` (``best_dual_scale`` and ``neg_conjugate``, what ``certify`` uses)."""
    from scipy.special import softmax

    from ..losses import best_dual_scale, loss_gradient, neg_conjugate

    rng = np.random.default_rng(50)
    for n, c, s, beta in [(5, 3, 4.0, 1.0), (8, 10, 0.5, 1.0), (3, 2, 2.0, 2.0), (6, 4, 10.0, 0.1)]:
        U = 2.0 * rng.standard_normal((n, c))
        labels = rng.integers(0, c, size=n)
        P = softmax(U, axis=1)
        G = loss_gradient(U, labels, "cross_entropy")
        t = best_dual_scale(G, labels, "cross_entropy", beta / s)
        want = neg_conjugate(t * G, labels, "cross_entropy")
        ok, message = close(fn(P.copy(), labels.copy(), s, beta), want,
                            what=f"the bound for n={n}, c={c}, s/beta={s / beta:g}")
        if not ok:
            return ok, message
    return True, ("your bound equals the library's certificate for four problems (t = 1 and t < 1 "
                  "both seen)")


def _test_linear_reference(fn) -> tuple[bool, str]:
    r"""The smallest beta at which W = 0 minimises :math:`\sum_i\mathrm{CE}(\phi_i^\top W,y_i)+\beta\|W\|_*`,
    against :func:`cvxattn_lib.cifar.compare.linear_reference`, on problems with and without every
    class present."""
    from ..cifar.compare import linear_reference

    rng = np.random.default_rng(11)
    for n, p, c in [(10, 3, 3), (7, 5, 4), (20, 2, 6), (5, 4, 2)]:
        Phi = rng.standard_normal((n, p))
        labels = rng.integers(0, c, size=n)
        ok, message = close(fn(Phi.copy(), labels.copy(), c), linear_reference(Phi, labels, c),
                            what=f"the reference for n={n}, p={p}, c={c}")
        if not ok:
            return ok, message
    return True, "your reference equals the library's on four problems (some with absent classes)"


EXERCISES: dict[str, Exercise] = {
    "05.chance_top5": number(_chance_top5, "a random ranking puts the true class among its first 5 "
                               "of 100 with probability 5/100"),
    "05.ce_bound": implement(_test_ce_bound, "t = min(1, beta / s); Q = t P + (1 - t) E (E the one-hot "
                             "rows of the labels); the bound is the summed entropy -sum(Q log Q), "
                             "with 0 log 0 = 0 (scipy.special.xlogy)"),
    "05.beta_zero": number(_beta_zero, "Z = 0 is optimal iff ||A*(grad L(0))||_2 <= beta; at U = 0 the "
                           "softmax is uniform, so grad L(0) = 1/c - E; A* of the mean-pooled head: "
                           "cal.solvers.spectral_norms(head, G)"),
    "05.recovered_params": implement(_test_recovered_params, "each recovered head has W1 (d x d) and W2 "
                                       "(d x c), and a rank-r Z gives r heads"),
    "05.recover_heads": implement(_test_recover_heads, "SVD Z = U S V^T, keep the r non-zero singular "
                                    "values; head j: vec(W1_j) = sqrt(s_j) u_j, vec(W2_j) = sqrt(s_j) v_j "
                                    "(row-major reshape)"),
    "05.linear_reference": implement(_test_linear_reference, "at W = 0 the softmax is uniform: the gradient "
                                     "of the loss is Phi^T (1/c - E); W = 0 is optimal iff its spectral norm "
                                     "is at most beta (the dual norm of the nuclear norm)"),
}

#: the exercises that ask to derive, implement or predict-then-test
DEEP = ("05.ce_bound", "05.beta_zero", "05.recovered_params", "05.recover_heads", "05.linear_reference")
