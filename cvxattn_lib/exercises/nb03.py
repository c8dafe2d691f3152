"""Exercises of notebook 03; worked solutions in ``notebooks/solutions/03_*.md``."""

from __future__ import annotations

import numpy as np

from .. import clustering
from ..convex import attention
from ._base import Exercise, number


def _mask_ones() -> int:
    # tokens (1, 0), (0, 1), (-1, 0) and the gate G = I: entries of 1{X G X^T >= 0}
    X = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    return int(attention.attention_masks(X, np.eye(2)[None]).sum())


EXERCISES: dict[str, Exercise] = {
    "03.mask_ones": number(_mask_ones, "with G = I the mask keeps the pairs with x_t . x_u >= 0 "
                             "(zero counts as kept), the diagonal included"),
    "03.ari_relabelled": number(lambda: clustering.adjusted_rand_index([0, 0, 1, 1, 2, 2],
                                                                         [2, 2, 0, 0, 1, 1]),
                                  "the ARI compares partitions, not the names of the groups"),
    "03.max_gated_heads": number(lambda: 16 * min(2 * 2, 2 * 2), "each of the P gates has its "
                                   "own d^2 x dc matrix Z_j, and each adds up to rank(Z_j) heads; "
                                   "here P = 16, d = 2, c = 2"),
}
