"""Self-checking exercises: a notebook calls ``check(key, answer)``; the right answers are computed
here from the library (not stored), and worked solutions live in ``notebooks/solutions/``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import arrangements, clustering
from .convex import attention


@dataclass(frozen=True)
class Exercise:
    """A question's expected answer (computed on demand), tolerance and hint."""

    expected: Callable[[], object]
    hint: str
    rtol: float = 1e-6


def _nuclear_of_example() -> float:
    return float(np.linalg.norm(np.array([[3.0, 0.0], [0.0, -4.0]]), "nuc"))


def _balanced_penalty() -> float:
    # neuron w1 = (3, 4), w2 = 2, beta = 1: min over rescaling of (||a w1||^2 + (w2/a)^2)/2
    return float(np.linalg.norm([3.0, 4.0]) * 2.0)


def _lifted_entries() -> int:
    # d = 4 features, c = 3 outputs: Z = vec(W1) vec(W2)^T is d^2 x d c
    W1, W2 = np.ones((1, 4, 4)), np.ones((1, 4, 3))
    return int(attention.lift(W1, W2).size)


def _one_head_nuclear() -> float:
    # one head W1 = I_2, W2 = (1, 1)^T: ||Z||_* = ||vec W1|| ||vec W2||
    return float(np.linalg.norm(attention.lift(np.eye(2)[None], np.ones((1, 2, 1))), "nuc"))


def _mask_ones() -> int:
    # tokens (1, 0), (0, 1), (-1, 0) and the gate G = I: entries of 1{X G X^T >= 0}
    X = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    return int(attention.attention_masks(X, np.eye(2)[None]).sum())


def _mixer_lifted_entries() -> int:
    # Z = sum_j vec(A_j) vec(B_j)^T for s = 8 tokens, d = 3 channels, c = 2 outputs
    from .convex.mixer import lift_mixer

    return int(lift_mixer(np.zeros((1, 8, 8)), np.zeros((1, 3, 2))).size)


def _circulant_penalty() -> float:
    # one kernel k = (3, 4, 0, 0) with channel map B = [[1]]: ||Z||_* = ||k vec(B)^T||_*
    from .convex.fno import lift_fno

    return float(np.linalg.norm(lift_fno(np.array([[3.0, 4.0, 0.0, 0.0]]), np.ones((1, 1, 1))), "nuc"))


def _block_norm_of_identity() -> float:
    # the identity token map circ(delta_0) on s = 6 tokens, d = c = 1, priced by sum_w ||R_w||_*
    from .convex.fno import circulant_to_spectral, lift_fno

    delta = np.eye(6)[:1]
    R = circulant_to_spectral(lift_fno(delta, np.ones((1, 1, 1))), d=1)
    return float(sum(np.linalg.norm(Rw, "nuc") for Rw in R))


def _paired_modes() -> int:
    from .convex.fno import parseval_multiplicity

    return int(np.sum(parseval_multiplicity(8) == 2))


def _linear_head_params() -> int:
    from .cifar.heads import LinearHead, n_params

    return n_params(LinearHead(256, 100))  # gMLP-S token mean (256 features) -> 100 classes


def _attention_params() -> int:
    from .nonconvex import MultiHeadAttention

    return int(sum(p.numel() for p in MultiHeadAttention(8, 5, 100, "linear").parameters()))


def _cifar_lifted_entries() -> int:
    from .convex.attention import design

    return int(design(np.zeros((1, 2, 8)), None).shape[1] * 100)  # Z reshaped to (d^3, c)


def _chance_top5() -> float:
    from .cifar.data import N_CLASSES

    return 5 / N_CLASSES


EXERCISES: dict[str, Exercise] = {
    "01.patterns": Exercise(lambda: arrangements.region_count_general_position(10, 3),
                            "count regions of 10 hyperplanes through the origin of R^3 in "
                            "general position: 2 * sum_{k<3} C(9, k)"),
    "01.nuclear": Exercise(_nuclear_of_example, "the nuclear norm sums the singular values, "
                           "which are the absolute values of a diagonal matrix's entries"),
    "01.rescaling": Exercise(_balanced_penalty, "at the best rescaling both terms are equal: "
                             "the penalty becomes ||w1|| * |w2|"),
    "01.linear_neurons": Exercise(lambda: 1, "a linear network computes X W1 W2 = X Z; how large "
                                  "can rank(Z) be when Z has one column?"),
    "02.lifted_entries": Exercise(_lifted_entries, "Z = sum_j vec(W1_j) vec(W2_j)^T: how long "
                                  "are vec(W1) (d x d) and vec(W2) (d x c)?"),
    "02.max_heads": Exercise(lambda: min(3 * 3, 3 * 2), "the optimum needs rank(Z*) heads, and a "
                             "d^2 x dc matrix has rank at most min(d^2, dc); here d = 3, c = 2"),
    "02.one_head_nuclear": Exercise(_one_head_nuclear, "a rank-one matrix a b^T has one singular "
                                    "value, ||a|| ||b||"),
    "03.mask_ones": Exercise(_mask_ones, "with G = I the mask keeps the pairs with x_t . x_u >= 0 "
                             "(zero counts as kept), the diagonal included"),
    "03.ari_relabelled": Exercise(lambda: clustering.adjusted_rand_index([0, 0, 1, 1, 2, 2],
                                                                         [2, 2, 0, 0, 1, 1]),
                                  "the ARI compares partitions, not the names of the groups"),
    "03.max_gated_heads": Exercise(lambda: 16 * min(2 * 2, 2 * 2), "each of the P gates has its "
                                   "own d^2 x dc matrix Z_j, and each adds up to rank(Z_j) heads; "
                                   "here P = 16, d = 2, c = 2"),
    "04.mixer_entries": Exercise(_mixer_lifted_entries, "the lifted Mixer matrix has one row per "
                                 "token pair (t, u) and one column per channel pair (a, b)"),
    "04.circulant_penalty": Exercise(_circulant_penalty, "Z = k vec(B)^T has rank one; its only "
                                     "singular value is ||k||_2 ||B||_F"),
    "04.block_norm_identity": Exercise(_block_norm_of_identity, "the DFT of a delta is 1 at every "
                                       "mode; count the rfft modes of s = 6 tokens"),
    "04.paired_modes": Exercise(_paired_modes, "the rfft of s = 8 tokens has s//2 + 1 modes; modes 0 "
                                "and s/2 are their own conjugates"),
    "05.linear_params": Exercise(_linear_head_params, "the linear head maps the token mean (256 "
                                 "features) to 100 logits with one weight matrix and no bias"),
    "05.attention_params": Exercise(_attention_params, "each recovered head has W1 (d x d) and W2 "
                                    "(d x c); count both for 5 heads"),
    "05.lifted_entries": Exercise(_cifar_lifted_entries, "Z is d^2 x dc: vec(W1) has d^2 entries, vec(W2) "
                                  "has d c"),
    "05.chance_top5": Exercise(_chance_top5, "a random ranking puts the true class among its first 5 "
                               "of 100 with probability 5/100"),
}


def check(key: str, answer) -> bool:
    """Print whether ``answer`` to exercise ``key`` is right (``None``: not attempted yet)."""
    if key not in EXERCISES:
        raise KeyError(f"unknown exercise {key!r}; known: {', '.join(EXERCISES)}")
    ex = EXERCISES[key]
    if answer is None:
        print(f"[{key}] not attempted yet: replace None with your answer. Hint: {ex.hint}")
        return False
    expected = ex.expected()
    try:
        ok = bool(np.allclose(float(answer), float(expected), rtol=ex.rtol, atol=0))
    except (TypeError, ValueError):
        ok = answer == expected
    print(f"[{key}] " + ("correct." if ok else f"not quite. Hint: {ex.hint}"))
    return ok
