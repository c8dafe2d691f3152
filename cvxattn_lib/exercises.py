"""Self-checking exercises: a notebook calls ``check(key, answer)``; the right answers are computed
here from the library (not stored), and worked solutions live in ``notebooks/solutions/``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import arrangements


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


def _linear_head_params() -> int:
    from .cifar.heads import LinearHead, n_params

    return n_params(LinearHead(256, 100))  # gMLP-S token mean (256 features) -> 100 classes


def _attention_params() -> int:
    from .nonconvex import MultiHeadAttention

    return int(sum(p.numel() for p in MultiHeadAttention(8, 5, 100, "linear").parameters()))


def _lifted_entries() -> int:
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
    "05.linear_params": Exercise(_linear_head_params, "the linear head maps the token mean (256 "
                                 "features) to 100 logits with one weight matrix and no bias"),
    "05.attention_params": Exercise(_attention_params, "each recovered head has W1 (d x d) and W2 "
                                    "(d x c); count both for 5 heads"),
    "05.lifted_entries": Exercise(_lifted_entries, "Z is d^2 x dc: vec(W1) has d^2 entries, vec(W2) "
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
