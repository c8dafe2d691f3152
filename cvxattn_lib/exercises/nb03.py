"""Exercises of notebook 03; worked solutions in ``notebooks/solutions/03_*.md``."""

from __future__ import annotations

import numpy as np

from .. import clustering
from ..convex import attention
from ._base import Exercise, close, implement, number

# the small problem of the derive/predict exercises: 6 samples of the routing toy, 4 gates
SMALL_TOY = dict(n=6, s=6, K=3, noise=0.1, seed=0)
SMALL_GATES = dict(n_gates=4, seed=0)


def _small_problem():
    X, Y, _ = clustering.routing_clusters(**SMALL_TOY)
    return X, Y, attention.attention_gates(X.shape[2], **SMALL_GATES)


def _mask_ones() -> int:
    # tokens (1, 0), (0, 1), (-1, 0) and the gate G = I: entries of 1{X G X^T >= 0}
    X = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    return int(attention.attention_masks(X, np.eye(2)[None]).sum())


def _test_masked_gram(fn) -> tuple[bool, str]:
    """The reader's masked_gram(X, G) (s, d, d) against the library's masks and design matrix."""
    rng = np.random.default_rng(3)
    for s, d in [(4, 2), (5, 3)]:
        X, G = rng.standard_normal((s, d)), rng.standard_normal((d, d))
        got = np.asarray(fn(X.copy(), G.copy()), float)
        M = attention.attention_masks(X[None], G[None])[0, 0]
        ok, msg = close(got, np.einsum("tu,uk,ul->tkl", M, X, X), what=f"Gamma (s={s}, d={d})")
        if not ok:
            return ok, msg
        # the row (t, a, k, l) of the design matrix is X[t, a] Gamma_t[k, l]
        B = np.einsum("ta,tkl->takl", X, got).reshape(s, d**3)
        ok, msg2 = close(B, attention.design(X[None], M[None]), what="the design matrix built from it")
        if not ok:
            return ok, msg2
    return True, msg + "; " + msg2


def _beta_max() -> float:
    return clustering.beta_max(*_small_problem())


def _first_gate() -> int:
    """The gate that carries the heads just below beta_max, found by solving there."""
    X, Y, G = _small_problem()
    fit = attention.fit_self_attention(X, Y, 0.95 * clustering.beta_max(X, Y, G),
                                       activation="gated_relu", gates=G)
    active = np.flatnonzero(clustering.active_gates(fit.Z))
    if active.size != 1:
        raise RuntimeError(f"expected one gate in use at 0.95 beta_max, found {active.tolist()}")
    return int(active[0])


EXERCISES: dict[str, Exercise] = {
    "03.mask_ones": number(_mask_ones, "with G = I the mask keeps the pairs with x_t . x_u >= 0 "
                             "(zero counts as kept), the diagonal included"),
    "03.ari_relabelled": number(lambda: clustering.adjusted_rand_index([0, 0, 1, 1, 2, 2],
                                                                         [2, 2, 0, 0, 1, 1]),
                                  "the ARI compares partitions, not the names of the groups"),
    "03.max_gated_heads": number(lambda: 16 * min(2 * 2, 2 * 2), "each of the P gates has its "
                                   "own d^2 x dc matrix Z_j, and each adds up to rank(Z_j) heads; "
                                   "here P = 16, d = 2, c = 2"),
    "03.masked_gram": implement(_test_masked_gram, "Gamma_t = sum_u M[t, u] x_u x_u^T with "
                                "M[t, u] = 1{x_t^T G x_u >= 0}: one einsum over u"),
    "03.beta_max": number(_beta_max, "at Z = 0 the residual is -Y; Z = 0 is optimal iff "
                          "||A_j*(Y)||_2 <= beta for every gate, with A_j*(Y) = (B_j^T Y) reshaped "
                          "to d^2 x dc (B_j = attention.design(X, mask_j))"),
    "03.first_gate": number(_first_gate, "just below beta_max only the gates whose dual "
                            "constraint is tight may carry heads; at beta_max that is the gate "
                            "with the largest ||A_j*(Y)||_2"),
}

# the exercises that ask the reader to implement, derive, or predict and then test
DEEP = ("03.masked_gram", "03.beta_max", "03.first_gate")
