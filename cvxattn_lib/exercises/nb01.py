"""Exercises of notebook 01; worked solutions in ``notebooks/solutions/01_*.md``."""

from __future__ import annotations

import numpy as np

from .. import arrangements
from ._base import Exercise, number


def _nuclear_of_example() -> float:
    return float(np.linalg.norm(np.array([[3.0, 0.0], [0.0, -4.0]]), "nuc"))


def _balanced_penalty() -> float:
    # neuron w1 = (3, 4), w2 = 2, beta = 1: min over rescaling of (||a w1||^2 + (w2/a)^2)/2
    return float(np.linalg.norm([3.0, 4.0]) * 2.0)


EXERCISES: dict[str, Exercise] = {
    "01.patterns": number(lambda: arrangements.region_count_general_position(10, 3),
                            "count regions of 10 hyperplanes through the origin of R^3 in "
                            "general position: 2 * sum_{k<3} C(9, k)"),
    "01.nuclear": number(_nuclear_of_example, "the nuclear norm sums the singular values, "
                           "which are the absolute values of a diagonal matrix's entries"),
    "01.rescaling": number(_balanced_penalty, "at the best rescaling both terms are equal: "
                             "the penalty becomes ||w1|| * |w2|"),
    "01.linear_neurons": number(lambda: 1, "a linear network computes X W1 W2 = X Z; how large "
                                  "can rank(Z) be when Z has one column?"),
}
