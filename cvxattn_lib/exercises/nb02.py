"""Exercises of notebook 02; worked solutions in ``notebooks/solutions/02_*.md``."""

from __future__ import annotations

import numpy as np

from ..convex import attention
from ._base import Exercise, number


def _lifted_entries() -> int:
    # d = 4 features, c = 3 outputs: Z = vec(W1) vec(W2)^T is d^2 x d c
    W1, W2 = np.ones((1, 4, 4)), np.ones((1, 4, 3))
    return int(attention.lift(W1, W2).size)


def _one_head_nuclear() -> float:
    # one head W1 = I_2, W2 = (1, 1)^T: ||Z||_* = ||vec W1|| ||vec W2||
    return float(np.linalg.norm(attention.lift(np.eye(2)[None], np.ones((1, 2, 1))), "nuc"))


EXERCISES: dict[str, Exercise] = {
    "02.lifted_entries": number(_lifted_entries, "Z = sum_j vec(W1_j) vec(W2_j)^T: how long "
                                  "are vec(W1) (d x d) and vec(W2) (d x c)?"),
    "02.max_heads": number(lambda: min(3 * 3, 3 * 2), "the optimum needs rank(Z*) heads, and a "
                             "d^2 x dc matrix has rank at most min(d^2, dc); here d = 3, c = 2"),
    "02.one_head_nuclear": number(_one_head_nuclear, "a rank-one matrix a b^T has one singular "
                                    "value, ||a|| ||b||"),
}
