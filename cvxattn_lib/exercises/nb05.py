"""Exercises of notebook 05; worked solutions in ``notebooks/solutions/05_*.md``."""

from __future__ import annotations

import numpy as np

from ._base import Exercise, close, implement, number

GIB = 2**30


def _chance_top5() -> float:
    from ..cifar.data import N_CLASSES

    return 5 / N_CLASSES


def _test_linear_logits(fn) -> tuple[bool, str]:
    """Logits of the linear head on the token mean, against ``cifar.heads.LinearHead``."""
    import torch

    from ..cifar.heads import LinearHead

    rng = np.random.default_rng(5)
    for n, s, d, c in [(4, 3, 2, 5), (6, 16, 8, 100), (1, 1, 3, 2)]:
        X, W = rng.standard_normal((n, s, d)), rng.standard_normal((d, c))
        head = LinearHead(d, c)
        with torch.no_grad():
            head.W.copy_(torch.from_numpy(W))
            want = head(torch.from_numpy(X).mean(dim=1)).numpy()
        ok, message = close(fn(X, W), want, what=f"logits for X {X.shape}, W {W.shape}")
        if not ok:
            return ok, message
    return True, "your logits equal LinearHead's on the token mean for three shapes"


def lifted_entries(d: int, c: int) -> int:
    """Entries of the lifted matrix Z (d^2, d c) of one linear attention head set, counted from the
    library's design matrix (d^3 columns, one per row of Z reshaped to (d^3, c))."""
    from ..convex.attention import design

    return int(design(np.zeros((1, 1, d)), None).shape[1]) * c


def _largest_dim(budget_bytes: int = GIB, c: int = 100, itemsize: int = 4) -> int:
    """The largest d whose float32 Z for c classes fits in ``budget_bytes`` (bisection on d)."""
    lo, hi = 1, 2
    while lifted_entries(hi, c) * itemsize <= budget_bytes:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if lifted_entries(mid, c) * itemsize <= budget_bytes else (lo, mid)
    return lo


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


EXERCISES: dict[str, Exercise] = {
    "05.chance_top5": number(_chance_top5, "a random ranking puts the true class among its first 5 "
                               "of 100 with probability 5/100"),
    "05.linear_logits": implement(_test_linear_logits, "average X over its token axis (axis 1), then "
                                    "multiply by W: (n, d) @ (d, c)"),
    "05.max_dim": number(_largest_dim, "Z is d^2 x dc, so it holds d^3 c numbers of 4 bytes; solve "
                           "4 * 100 * d^3 <= 2^30 for the largest integer d, and check d + 1"),
    "05.recovered_params": implement(_test_recovered_params, "each recovered head has W1 (d x d) and W2 "
                                       "(d x c), and a rank-r Z gives r heads"),
    "05.recover_heads": implement(_test_recover_heads, "SVD Z = U S V^T, keep the r non-zero singular "
                                    "values; head j: vec(W1_j) = sqrt(s_j) u_j, vec(W2_j) = sqrt(s_j) v_j "
                                    "(row-major reshape)"),
}

#: the exercises that ask to derive, implement or predict-then-test
DEEP = ("05.linear_logits", "05.max_dim", "05.recovered_params", "05.recover_heads")
