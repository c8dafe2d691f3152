"""The exact ReLU program's path by a working set (``cal.solvers.relu_path``): when the strong rule
misses a block the exact KKT check adds it, and on random small problems (P from 7 patterns up, d = 3
with the face enumeration and d = 2 with NNLS) every point equals the full CVXPY program at the same
β, with the house tolerance and the certified bound of tests/test_paths.py."""

import numpy as np
import pytest

import cvxattn_lib as cal
import cvxattn_lib.toydata  # noqa: F401
from cvxattn_lib import arrangements, cvxpy_solve
from cvxattn_lib.convex.relu_cones import cones_for
from cvxattn_lib.solvers import relu_path as rp

HOUSE = 1e-6  # relative agreement of optima with CVXPY (as tests/test_paths.py)
ROUND = 1e-12  # round-off allowance on the certified bound (relative)


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CVXATTN_DATA", str(tmp_path))


def spiral(n, seed):
    return cal.toydata.two_class_2d(n=n, kind="spiral", noise=0.05, seed=seed)


def value(X, y, D, Z, beta):
    V, W = Z
    pred = np.sum(D * (X @ (V - W)), axis=1)
    reg = np.linalg.norm(V, axis=0).sum() + np.linalg.norm(W, axis=0).sum()
    return 0.5 * np.sum((pred - y) ** 2) + beta * reg


def same_optimum(got, ref):
    """Two certificates of the same program and β describe the same optimum."""
    bound = max(got["value"] - ref["lower_bound"], ref["value"] - got["lower_bound"])
    assert abs(got["value"] - ref["value"]) <= bound + ROUND * ref["value"]
    assert got["value"] == pytest.approx(ref["value"], rel=HOUSE, abs=1e-12)


def test_a_block_the_strong_rule_misses_is_added_by_the_kkt_check():
    X, y = spiral(8, seed=0)
    D, _ = arrangements.enumerate_patterns(X)
    cones = cones_for(X, D)
    bmax = cones.dual_norm(-y)
    grid = bmax * np.array([0.02, 0.1, 0.3, 0.6, 0.9])
    got, Zs, infos = rp.relu_path(X, y, D, grid)
    assert got == bmax
    k = next(k for k, info in enumerate(infos) if info.added > 0)  # a miss happens here ...
    assert infos[k].solves >= 2 and "added by the KKT check" in infos[k].status(2 * D.shape[1])
    # ... reproduce it: the set the strong rule keeps from the previous (larger) point
    Vp, Wp = Zs[k + 1]
    prev = cones.block_norms(np.sum(D * (X @ (Vp - Wp)), axis=1) - y)
    col = np.stack([np.linalg.norm(Vp, axis=0), np.linalg.norm(Wp, axis=0)])
    mask = rp.screen(prev, grid[k + 1], grid[k], col > 1e-6 * col.max())
    program = rp._Restricted(X, y, cones, mask)
    (Uv, Uw), _ = program.solve(float(grid[k]))
    V, W = np.zeros((3, D.shape[1])), np.zeros((3, D.shape[1]))
    V[:, program.iv], W[:, program.iw] = Uv, Uw
    norms = cones.block_norms(np.sum(D * (X @ (V - W)), axis=1) - y)
    assert norms[~mask].max() > grid[k] * (1 + 1e-3)  # the screened solution is not optimal
    full = cal.convex.fit_mlp(X, y, float(grid[k]), "relu").certificate()
    assert value(X, y, D, [V, W], grid[k]) > full["value"] * (1 + 1e-6)  # and is worse
    # the path's answer is the full program's optimum
    assert value(X, y, D, Zs[k], grid[k]) == pytest.approx(full["value"], rel=HOUSE)
    assert all(info.max_outside <= 1 + rp.MARGIN for info in infos)


CASES = {  # name: (X, y), P
    "n=3": lambda: cal.toydata.random_regression(3, 2, 1, seed=1),
    "n=5": lambda: cal.toydata.random_regression(5, 2, 1, seed=2),
    "spiral n=12": lambda: spiral(12, seed=3),
    "d=2, n=7 (NNLS)": lambda: cal.toydata.random_regression(7, 2, 1, seed=4),
}


@pytest.mark.parametrize("case", list(CASES))
def test_working_set_path_equals_the_full_program(case):
    X, Y = CASES[case]()
    if case.startswith("n="):
        X = np.c_[X, np.ones(len(X))]  # a bias column: d = 3
    y = np.asarray(Y, float).reshape(-1)
    path = cal.solvers.regularisation_path("mlp", X, y, activation="relu", n_betas=5, eps=1e-2,
                                           progress=False, cache=False)
    D = path.fits[0].D
    assert path.method == "cvxpy" and cones_for(X, D).method == ("nnls" if X.shape[1] == 2 else "faces")
    for k, beta in enumerate(path.betas):
        got = path.fits[k].certificate()  # over every pattern, float64, from the data
        assert path.rel_gaps[k] <= 1e-7 and got["lower_bound"] <= got["value"] * (1 + ROUND)
        same_optimum(got, cal.convex.fit_mlp(X, y, float(beta), "relu").certificate())
    assert path.iterations[-1] == 0 and all(np.count_nonzero(z) == 0 for z in path.fits[-1].Z)
    assert path.values[-1] == pytest.approx(0.5 * y @ y, rel=1e-12)
    assert np.all(path.iterations[:-1] >= 1)


def test_a_narrow_screen_reaches_the_same_optima_through_the_kkt_check():
    X, y = spiral(12, seed=5)
    D, _ = arrangements.enumerate_patterns(X)
    grid = cones_for(X, D).dual_norm(-y) * np.logspace(-2, -0.1, 6)
    _, Z1, strong = rp.relu_path(X, y, D, grid)
    _, Z2, narrow = rp.relu_path(X, y, D, grid, slope=1e-3)  # keeps little beyond the support
    assert sum(i.added for i in narrow) > sum(i.added for i in strong)
    assert np.mean([i.blocks for i in narrow]) < np.mean([i.blocks for i in strong])
    for k, beta in enumerate(grid):
        a, b = value(X, y, D, Z1[k], beta), value(X, y, D, Z2[k], beta)
        assert a == pytest.approx(b, rel=HOUSE)


def test_an_inaccurate_first_solve_is_re_solved_and_recorded(monkeypatch):
    X, y = spiral(8, seed=0)
    D, _ = arrangements.enumerate_patterns(X)
    grid = cones_for(X, D).dual_norm(-y) * np.array([0.05, 0.3])
    refs = [cal.convex.fit_mlp(X, y, float(b), "relu").certificate() for b in grid]
    # Clarabel stopped after 4 iterations at the tight tolerances: inaccurate, then re-solved
    tight = dict(cvxpy_solve._TIGHT["CLARABEL"], max_iter=4)
    monkeypatch.setitem(cvxpy_solve._TIGHT, "CLARABEL", tight)
    _, Zs, infos = rp.relu_path(X, y, D, grid)
    for k, beta in enumerate(grid):
        assert infos[k].retried and "re-solved" in infos[k].status(2 * D.shape[1])
        assert value(X, y, D, Zs[k], beta) == pytest.approx(refs[k]["value"], rel=HOUSE)


def test_bad_input_names_the_argument():
    X, y = spiral(6, seed=0)
    D, _ = arrangements.enumerate_patterns(X)
    with pytest.raises(ValueError, match="D must have shape"):
        rp.relu_path(X, y, D[:-1], [0.1])
    with pytest.raises(ValueError, match="Y must have"):
        rp.relu_path(X, y[:-1], D, [0.1])
    with pytest.raises(ValueError, match="betas"):
        rp.relu_path(X, y, D, [0.1, -1.0])
    with pytest.raises(ValueError, match="slope"):
        rp.relu_path(X, y, D, [0.1], slope=0.0)
