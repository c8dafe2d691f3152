"""Exercises of notebook 05; worked solutions in ``notebooks/solutions/05_*.md``."""

from __future__ import annotations

import numpy as np

from ._base import Exercise, number


def _linear_head_params() -> int:
    from ..cifar.heads import LinearHead, n_params

    return n_params(LinearHead(256, 100))  # gMLP-S token mean (256 features) -> 100 classes


def _attention_params() -> int:
    from ..nonconvex import MultiHeadAttention

    return int(sum(p.numel() for p in MultiHeadAttention(8, 5, 100, "linear").parameters()))


def _cifar_lifted_entries() -> int:
    from ..convex.attention import design

    return int(design(np.zeros((1, 2, 8)), None).shape[1] * 100)  # Z reshaped to (d^3, c)


def _chance_top5() -> float:
    from ..cifar.data import N_CLASSES

    return 5 / N_CLASSES


EXERCISES: dict[str, Exercise] = {
    "05.linear_params": number(_linear_head_params, "the linear head maps the token mean (256 "
                                 "features) to 100 logits with one weight matrix and no bias"),
    "05.attention_params": number(_attention_params, "each recovered head has W1 (d x d) and W2 "
                                    "(d x c); count both for 5 heads"),
    "05.lifted_entries": number(_cifar_lifted_entries, "Z is d^2 x dc: vec(W1) has d^2 entries, vec(W2) "
                                  "has d c"),
    "05.chance_top5": number(_chance_top5, "a random ranking puts the true class among its first 5 "
                               "of 100 with probability 5/100"),
}
