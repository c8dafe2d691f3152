"""The one place that calls a CVXPY solver.

No solver is hard-coded: :func:`solve` tries the installed solvers that handle the problem's
cones in order of accuracy (Clarabel, then MOSEK/ECOS if present, then SCS with tight
tolerances) and raises :class:`SolveError` naming the status, the installed solvers and what to try.
"""

from __future__ import annotations

import difflib

import cvxpy as cp

# accurate interior-point solvers first, first-order SCS last (it is less accurate) ...
PREFERENCE = ("CLARABEL", "MOSEK", "ECOS", "SCS")
# ... except with exponential cones (cross-entropy), where Clarabel stops at ~1e-7 relative while
# SCS with the tolerances below reaches ~1e-10 on the problems of this collection
EXP_CONE_PREFERENCE = ("SCS", "CLARABEL", "MOSEK", "ECOS")
_TIGHT = {
    "CLARABEL": dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, tol_ktratio=1e-10,
                     max_iter=500),
    "ECOS": dict(abstol=1e-10, reltol=1e-10, feastol=1e-10, max_iters=500),
    "SCS": dict(eps_abs=1e-9, eps_rel=1e-9, max_iters=200_000),
    "MOSEK": {},
}
_OK = (cp.OPTIMAL,)


class SolveError(RuntimeError):
    """A CVXPY solve that did not reach an optimal status."""


def installed_solvers() -> list[str]:
    """The solvers CVXPY can call in this environment."""
    return list(cp.installed_solvers())


def has_exponential_cone(problem: cp.Problem) -> bool:
    """Whether the problem uses atoms that compile to exponential cones (log-sum-exp, exp, log)."""
    exp_atoms = (cp.log_sum_exp, cp.exp, cp.log, cp.entr, cp.logistic)
    return any(issubclass(atom, exp_atoms) for atom in problem.atoms())


def attempts(candidates: list[str]) -> list[tuple[bool, str]]:
    """The order of (tight tolerances?, solver) tries: each solver at tight tolerances; an
    interior-point solver that falls short is retried at its defaults straight away (a second or
    so), while SCS's default run comes last (it is the least accurate).  The certificate of the
    fit, not the solver's status, then tells how close to the optimum the result is."""
    order = []
    for name in candidates:
        order.append((True, name))
        if name != "SCS":
            order.append((False, name))
    return order + ([(False, "SCS")] if "SCS" in candidates else [])


def solve(problem: cp.Problem, solver: str | None = None, verbose: bool = False,
          **options) -> float:
    """Solve ``problem`` to high accuracy and return its optimal value.

    ``solver`` forces one solver (its name as in ``cvxpy.installed_solvers()``); otherwise the
    installed ones in :data:`PREFERENCE` (:data:`EXP_CONE_PREFERENCE` when the problem has
    exponential cones) are tried in turn, at tight tolerances and then at their defaults, until
    one reports ``optimal``.
    Extra ``options`` go to the solver.  Raises :class:`SolveError` if none succeeds.
    """
    available = installed_solvers()
    if solver is not None:
        if solver.upper() not in available:
            if solver.upper() in cp.settings.SOLVERS:
                how = f"Install it (e.g. `pip install {solver.lower()}`)"
            else:
                close = difflib.get_close_matches(solver.upper(), cp.settings.SOLVERS, n=3)
                how = (f"{solver!r} is not a CVXPY solver name"
                       + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise SolveError(f"solver={solver!r} is not installed; installed solvers: "
                             f"{', '.join(available)}. {how}, or pass solver=None to let cvxattn "
                             "choose.")
        candidates = [solver.upper()]
    else:
        order = EXP_CONE_PREFERENCE if has_exponential_cone(problem) else PREFERENCE
        candidates = [s for s in order if s in available]
        if not candidates:
            raise SolveError(f"none of the solvers cvxattn uses ({', '.join(PREFERENCE)}) is "
                             f"installed (installed: {', '.join(available)}); "
                             "`pip install clarabel scs`.")
    tried = []
    for tight, name in attempts(candidates):
        opts = {**(_TIGHT.get(name, {}) if tight else {}), **options}
        if not tight:
            # a warm start would reuse the cached solver *with its tight settings* (CVXPY merges
            # new options into the old ones), so the retry at defaults must start cold
            opts.setdefault("warm_start", False)
        try:
            problem.solve(solver=name, verbose=verbose, **opts)
        except cp.error.SolverError as exc:
            tried.append(f"{name}{'' if tight else ' (default tolerances)'}: solver error ({exc})")
            continue
        except cp.error.DCPError:
            raise
        if problem.status in _OK:
            return float(problem.value)
        if problem.status in (cp.INFEASIBLE, cp.UNBOUNDED):
            raise SolveError(
                f"{name} certified the problem {problem.status} (status {problem.status!r}); "
                f"installed solvers: {', '.join(available)}. What to try: check the data and "
                "constraints you added; cvxattn's own programs are always feasible and bounded, "
                "so for them this is numerical: rescale X and Y.")
        tried.append(f"{name}{'' if tight else ' (default tolerances)'}: status {problem.status!r}")
    raise SolveError(
        "the convex program was not solved to optimality. Tried " + "; ".join(tried)
        + f". Installed solvers: {', '.join(available)}. What to try: rescale the data "
        "(standardise X, Y), increase beta, use fewer gates/patterns, or install a commercial "
        "solver such as MOSEK and pass solver='MOSEK'.")
