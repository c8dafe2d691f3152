"""The one ``solve()`` helper and the runtime set-up every notebook starts with.

``cal.solve`` must pick an installed solver (nothing hard-coded) and, when it fails, raise a
``SolveError`` that names the status, the installed solvers and what to try.  ``cal.runtime``:
fast mode, data root, and ``setup`` printing what it chose and making draws repeatable.
"""

from importlib.metadata import version

import cvxpy as cp
import matplotlib
import numpy as np
import pytest
import torch

import cvxattn_lib as cal


def tiny_problem():
    """min ||x - a||^2 s.t. x >= 0 with a = (1, -2): x* = (1, 0), p* = 4."""
    x = cp.Variable(2)
    return cp.Problem(cp.Minimize(cp.sum_squares(x - np.array([1.0, -2.0]))), [x >= 0]), x


def infeasible_problem():
    x = cp.Variable()
    return cp.Problem(cp.Minimize(x), [x >= 1, x <= 0])


def unbounded_problem():
    x = cp.Variable()
    return cp.Problem(cp.Minimize(x), [x <= 0])


# -- solve ---------------------------------------------------------------------------------------
def test_solve_returns_the_optimum_with_an_installed_solver():
    problem, x = tiny_problem()
    value = cal.solve(problem)
    assert isinstance(value, float)
    assert value == pytest.approx(4.0, rel=1e-8)
    np.testing.assert_allclose(x.value, [1.0, 0.0], atol=1e-7)
    assert problem.status == cp.OPTIMAL
    name = problem.solver_stats.solver_name
    assert name in cal.installed_solvers()
    assert name in cal.cvxpy_solve.PREFERENCE  # one of the solvers the helper knows how to tune


def test_installed_solvers_matches_cvxpy():
    assert cal.installed_solvers() == list(cp.installed_solvers())


@pytest.mark.parametrize("solver", [s for s in cal.cvxpy_solve.PREFERENCE
                                    if s in cp.installed_solvers()])
def test_solve_with_a_forced_installed_solver(solver):
    problem, _ = tiny_problem()
    # the name is matched case-insensitively, as users type it
    assert cal.solve(problem, solver=solver.lower()) == pytest.approx(4.0, rel=1e-7)
    assert problem.solver_stats.solver_name == solver


def check_failure_message(message: str, status: str):
    assert status in message, message
    for name in cal.installed_solvers():
        assert name in message, (name, message)
    assert "What to try" in message, message


def test_infeasible_problem_raises_solve_error_with_status_solvers_and_hint():
    with pytest.raises(cal.SolveError) as info:
        cal.solve(infeasible_problem())
    check_failure_message(str(info.value), cp.INFEASIBLE)


def test_unbounded_problem_raises_solve_error_with_status_solvers_and_hint():
    with pytest.raises(cal.SolveError) as info:
        cal.solve(unbounded_problem())
    check_failure_message(str(info.value), cp.UNBOUNDED)


def test_solve_error_is_a_runtime_error():
    """Callers that catch ``RuntimeError`` (as for other solver failures) also catch it."""
    assert issubclass(cal.SolveError, RuntimeError)
    with pytest.raises(RuntimeError):
        cal.solve(infeasible_problem())


def test_unknown_solver_raises_solve_error_naming_it():
    problem, _ = tiny_problem()
    with pytest.raises(cal.SolveError, match=r"solver='NOT_A_SOLVER' is not installed") as info:
        cal.solve(problem, solver="NOT_A_SOLVER")
    for name in cal.installed_solvers():
        assert name in str(info.value)
    assert problem.status is None  # nothing was attempted


def test_non_convex_problem_is_reported_by_cvxpy_not_hidden():
    x = cp.Variable(2)
    with pytest.raises(cp.error.DCPError):
        cal.solve(cp.Problem(cp.Maximize(cp.sum_squares(x)), [x <= 1]))


# -- runtime -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,fast", [("1", True), ("true", True), (" YES ", True), ("on", True),
                                        ("0", False), ("", False), ("no", False),
                                        ("false", False), (None, False)])
def test_pick_honours_fast_mode(monkeypatch, value, fast):
    if value is None:
        monkeypatch.delenv(cal.runtime.FAST_ENV, raising=False)
    else:
        monkeypatch.setenv(cal.runtime.FAST_ENV, value)
    assert cal.is_fast() is fast
    assert cal.pick(full=400, fast=12) == (12 if fast else 400)


def test_data_root_honours_env(monkeypatch, tmp_path):
    target = tmp_path / "cvx" / "data"
    monkeypatch.setenv(cal.runtime.DATA_ENV, str(target))
    assert cal.data_root() == target
    assert target.is_dir()  # created on first use


def test_data_root_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(cal.runtime.DATA_ENV, "~/cvxattn-cache")
    assert cal.data_root() == tmp_path / "cvxattn-cache"


def test_data_root_defaults_to_repo_data(monkeypatch):
    monkeypatch.delenv(cal.runtime.DATA_ENV, raising=False)
    assert cal.data_root() == cal.runtime._REPO_ROOT / "data"


@pytest.fixture
def isolated_setup(monkeypatch, tmp_path):
    """Fast mode on, data root in tmp_path, no device override; rcParams restored afterwards
    (``setup`` applies the bundled plot style, which must not leak into other test files)."""
    monkeypatch.setenv(cal.runtime.FAST_ENV, "1")
    monkeypatch.setenv(cal.runtime.DATA_ENV, str(tmp_path))
    monkeypatch.delenv(cal.runtime.DEVICE_ENV, raising=False)
    with matplotlib.rc_context():
        yield tmp_path


def test_setup_prints_versions_device_fast_mode_and_data_root(isolated_setup, capsys):
    cfg = cal.setup(seed=0)
    out = capsys.readouterr().out
    assert cfg.fast is True and cfg.seed == 0 and cfg.data_root == isolated_setup
    for name in ["numpy", "cvxpy", "clarabel", "torch", "matplotlib"]:
        assert f"{name} {version(name)}" in out, out  # distribution versions, as pip shows them
    assert f"device   : {cfg.device}" in out
    assert "fast mode: True" in out
    assert f"data root: {isolated_setup}" in out
    assert "seed     : 0" in out


def test_setup_is_silent_when_asked(isolated_setup, capsys):
    cal.setup(seed=0, verbose=False)
    assert capsys.readouterr().out == ""


def test_setup_makes_draws_repeatable(isolated_setup):
    def draws(seed):
        cfg = cal.setup(seed=seed, verbose=False)
        return torch.rand(4), np.random.rand(4), cfg.rng.standard_normal(4)

    first, again, other = draws(0), draws(0), draws(1)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_interior_point_solvers_retry_at_defaults_before_scs():
    from cvxattn_lib.cvxpy_solve import attempts

    # a PSD program where Clarabel stops "almost solved" at tight tolerances must not fall through
    # to SCS's 200k-iteration tight run before Clarabel's own defaults are tried
    assert attempts(["CLARABEL", "SCS"]) == [(True, "CLARABEL"), (False, "CLARABEL"),
                                             (True, "SCS"), (False, "SCS")]
    assert attempts(["SCS", "CLARABEL"]) == [(True, "SCS"), (True, "CLARABEL"),
                                             (False, "CLARABEL"), (False, "SCS")]
