"""Exercises of notebook 01; worked solutions in ``notebooks/solutions/01_*.md``.

``DEEP`` lists the exercises that ask the reader to derive, implement or predict-then-test.
"""

from __future__ import annotations

import numpy as np

from .. import arrangements, toydata
from ._base import Exercise, close, implement, number

BETA_MAX_TOY = dict(n=12, kind="spiral", noise=0.05, seed=0)  # the toy of exercise 01.beta_max


def _nuclear_of_example() -> float:
    return float(np.linalg.norm(np.array([[3.0, 0.0], [0.0, -4.0]]), "nuc"))


def _balanced_penalty() -> float:
    # neuron w1 = (3, 4), w2 = 2, beta = 1: min over rescaling of (||a w1||^2 + (w2/a)^2)/2
    return float(np.linalg.norm([3.0, 4.0]) * 2.0)


def _pattern_set(D) -> set:
    D = np.asarray(D, dtype=bool)
    return {D[:, j].tobytes() for j in range(D.shape[1])}


def _test_patterns_2d(fn) -> tuple[bool, str]:
    """The reader's ``fn(X)`` (X (n, 2)) must return every activation pattern of X, the all-zero
    one included when it occurs, as the columns of an (n, P) boolean array (any order)."""
    rng = np.random.default_rng(11)
    cases = [rng.standard_normal((n, 2)) for n in (3, 5, 8)]
    cases.append(np.abs(rng.standard_normal((6, 2))) + 0.1)  # all in one quadrant: zero pattern
    for X in cases:
        got = np.asarray(fn(X.copy()))
        want, _ = arrangements.enumerate_patterns(X, drop_zero=False)
        if got.ndim != 2 or got.shape[0] != X.shape[0]:
            return False, (f"for X of shape {X.shape} your function returned shape {got.shape}, "
                           f"expected ({X.shape[0]}, P)")
        if got.dtype != bool and not np.isin(got, (0, 1)).all():
            return False, "entries must be booleans (or 0/1): whether point i is active"
        mine, ref = _pattern_set(got), _pattern_set(want)
        if mine != ref:
            return False, (f"for n = {X.shape[0]} points you found {len(mine)} distinct patterns, "
                           f"cal.arrangements.enumerate_patterns finds {len(ref)} "
                           f"({len(ref - mine)} missing, {len(mine - ref)} not patterns of X)")
    return True, "every pattern found, none extra, on 4 data sets (one with the zero pattern)"


def _test_relu_dual_norm(fn) -> tuple[bool, str]:
    """The reader's ``fn(X, v)`` must return max_{||u|| <= 1} |v^T (X u)_+| exactly."""
    rng = np.random.default_rng(12)
    for n, d in ((6, 2), (8, 3), (7, 3)):
        X, v = rng.standard_normal((n, d)), rng.standard_normal(n)
        ok, msg = close(float(fn(X.copy(), v.copy())), arrangements.relu_dual_norm(X, v),
                        rtol=1e-6, atol=1e-9, what=f"the dual norm for X {X.shape}")
        if not ok:
            return False, msg + " (a sampled maximum is only a lower estimate)"
    return True, "agrees with cal.arrangements.relu_dual_norm on 3 random problems"


def _beta_max() -> float:
    X, y = toydata.two_class_2d(**BETA_MAX_TOY)
    return arrangements.relu_dual_norm(X, y)


EXERCISES: dict[str, Exercise] = {
    "01.patterns": number(lambda: arrangements.region_count_general_position(10, 3),
                            "count regions of 10 hyperplanes through the origin of R^3 in "
                            "general position: 2 * sum_{k<3} C(9, k)"),
    "01.nuclear": number(_nuclear_of_example, "the nuclear norm sums the singular values, "
                           "which are the absolute values of a diagonal matrix's entries"),
    "01.rescaling": number(_balanced_penalty, "at the best rescaling both terms are equal: "
                             "the penalty becomes ||w1|| * |w2|"),
    "01.arrangement_2d": implement(_test_patterns_2d,
                                   "line i is perpendicular to x_i; sort the 2n angles of the "
                                   "lines (angle(x_i) +- pi/2), take the middle direction w of "
                                   "each arc between neighbours, and read off X w >= 0"),
    "01.relu_dual_norm": implement(_test_relu_dual_norm,
                                   "on the cone K_j = {u : (2D_j - I) X u >= 0} of pattern D_j, "
                                   "(Xu)_+ = D_j X u; maximise +-(X^T D_j v)^T u over K_j and the "
                                   "unit ball with cal.certificates.cone_support, over every "
                                   "pattern of cal.arrangements.enumerate_patterns"),
    "01.beta_max": number(_beta_max,
                            "W = 0 is optimal iff v = -y (the residual of the zero network) is "
                            "dual feasible; compute max_{||u||<=1} |y^T (Xu)_+| on "
                            "cal.toydata.two_class_2d(n=12, kind='spiral', noise=0.05, seed=0)"),
}

DEEP = ("01.arrangement_2d", "01.relu_dual_norm", "01.beta_max")
