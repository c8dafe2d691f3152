"""How long one move of the beta slider takes: the CVXPY problem rebuilt vs parameterised.

The setting is notebook 01's default: the 2-D spiral ``cal.toydata.two_class_2d(n=40, seed=0)``
with the exact ReLU program (every activation pattern enumerated), which is what
``cal.widgets.mlp_beta_explorer`` solves.  A "move" solves at the next beta on the slider's log grid
``10**np.arange(-2, 0.01, 0.25)``.

Variants, run in the same process, interleaved over ``--repeats``:

(a) rebuild:        ``cal.convex.fit_mlp(X, y, beta, "relu")`` per move (patterns, problem,
                    canonicalisation and solve each time);
(b) parameterised:  ``prog = MLPProgram(X, y, "relu")`` built and solved once at the widget's
                    initial beta (0.1) before timing, then ``prog.fit(beta)`` per move; CVXPY
                    reuses its compiled DPP problem, beta is a ``Parameter``;
(c) warm start:     only with ``--scs-warm``.  Clarabel (the solver ``cal.solve`` picks) has no
                    warm start; SCS has one, and ``MLPProgram.fit`` forwards no solver options, so
                    (c) sets ``prog.beta`` and calls ``cal.solve(prog.problem, solver="SCS",
                    warm_start=True)``, against the same program solved cold by SCS (c0).  At the
                    library's tight SCS tolerances this takes seconds to minutes per move at
                    n=40: use a small ``--n``.  (c0)/(c) are compared by the solver's value (they
                    make no ``MLPFit``); (a)/(b) by ``fit.value``, recomputed in float64.

Prints the median milliseconds per move of each variant, the ratio rebuild / parameterised, and
the largest relative difference of the optima between variants (asserted <= 1e-8).

    python benchmarks/bench_slider_resolve.py            # n=40, 3 repeats: about 3 min on 2 cores
    python benchmarks/bench_slider_resolve.py --n 16 --repeats 5
    python benchmarks/bench_slider_resolve.py --n 12 --repeats 1 --scs-warm
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from tqdm.auto import tqdm

import cvxattn_lib as cal
import cvxattn_lib.toydata
from cvxattn_lib.convex import MLPProgram, fit_mlp

BETAS = 10 ** np.arange(-2, 0.01, 0.25)  # the slider's log grid, 9 values from 0.01 to 1
BETA_INITIAL = 0.1  # the explorer's default: solved when the widget is built, before any move
AGREE = 1e-8  # optima of the variants, relative


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40, help="points of the spiral (default 40, as nb 01)")
    p.add_argument("--repeats", type=int, default=3, help="passes over the beta grid (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the toy data (default 0)")
    p.add_argument("--scs-warm", action="store_true",
                   help="also time SCS cold vs warm-started on the parameterised program (slow)")
    args = p.parse_args(argv)
    if args.n < 2 or args.repeats < 1:
        p.error("--n must be >= 2 and --repeats >= 1")
    return args


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):  # not on Windows
        return "n/a"


def print_machine():
    v = cal.runtime.versions()
    print(f"machine : {platform.platform()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs (python {platform.python_version()})")
    print(f"load    : {load_average()} (1, 5, 15 min) at start; other work on the machine "
          "slows every variant")
    print("packages: " + ", ".join(f"{k} {v[k]}" for k in
                                   ["numpy", "scipy", "cvxpy", "clarabel", "scs", "torch"]))
    print(f"solvers : installed {', '.join(cal.installed_solvers())}")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return 1e3 * (time.perf_counter() - t0), out


def run_rebuild(X, y, bar):
    """(a): the whole problem per move."""
    times, values = [], []
    for beta in BETAS:
        ms, fit = timed(lambda b=beta: fit_mlp(X, y, b, "relu"))
        times.append(ms)
        values.append(fit.value)
        bar.update()
    return times, values, {}


def run_parameterised(X, y, bar):
    """(b): one program, beta a Parameter; built and first solved outside the clock."""
    setup_ms, prog = timed(lambda: MLPProgram(X, y, "relu"))
    first_ms, _ = timed(lambda: prog.fit(BETA_INITIAL))
    times, values = [], []
    for beta in BETAS:
        ms, fit = timed(lambda b=beta: prog.fit(b))
        times.append(ms)
        values.append(fit.value)
        bar.update()
    return times, values, {"build_ms": setup_ms, "first_solve_ms": first_ms,
                           "solver": fit.solver,
                           "patterns": prog.D.shape[1]}


def run_scs(X, y, bar, warm: bool):
    """(c0) SCS cold / (c) SCS warm-started, on the parameterised program."""
    prog = MLPProgram(X, y, "relu", solver="SCS")
    prog.fit(BETA_INITIAL)  # compile, and the starting point of the first warm start
    times, values, iters = [], [], []
    for beta in BETAS:
        prog.beta.value = float(beta)
        ms, value = timed(lambda: cal.solve(prog.problem, solver="SCS", warm_start=warm))
        times.append(ms)
        values.append(value)
        iters.append(prog.problem.solver_stats.num_iters)
        bar.update()
    return times, values, {"iters": iters}


def main(argv=None):
    args = parse_args(argv)
    print_machine()
    X, y = cal.toydata.two_class_2d(n=args.n, seed=args.seed)
    variants = {"(a) rebuild per move": run_rebuild,
                "(b) parameterised (DPP)": run_parameterised}
    if args.scs_warm:
        variants["(c0) parameterised, SCS cold"] = lambda X, y, bar: run_scs(X, y, bar, False)
        variants["(c) parameterised, SCS warm"] = lambda X, y, bar: run_scs(X, y, bar, True)
    print(f"problem : spiral n={args.n}, X {X.shape}, exact ReLU program; {len(BETAS)} moves "
          f"over beta = {', '.join(f'{b:.3g}' for b in BETAS)}; {args.repeats} repeats")

    times = {k: [] for k in variants}
    values = {k: [] for k in variants}
    extra = {k: [] for k in variants}
    with tqdm(total=len(variants) * len(BETAS) * args.repeats, desc="slider moves") as bar:
        for _ in range(args.repeats):
            for name, run in variants.items():  # interleaved, so drift hits every variant alike
                t, v, e = run(X, y, bar)
                times[name] += t
                values[name].append(v)
                extra[name].append(e)

    # the optima must not depend on how the problem was built or started
    reference = np.asarray(values["(a) rebuild per move"][0])
    worst = {}
    for name, runs in values.items():
        rel = np.abs(np.asarray(runs) - reference) / np.abs(reference)
        worst[name] = float(rel.max())

    print()
    b = extra["(b) parameterised (DPP)"][0]
    print(f"program : {b['patterns']} activation patterns, solver {b['solver']}; "
          f"(b) builds in {b['build_ms']:.0f} ms and first solves (with compile) in "
          f"{b['first_solve_ms']:.0f} ms, once per widget, not timed below")
    print(f"{'variant':<30} {'median ms/move':>15} {'min':>9} {'max':>9} {'total s':>9} "
          f"{'max rel diff':>13}")
    medians = {}
    for name in variants:
        t = np.asarray(times[name])
        medians[name] = float(np.median(t))
        print(f"{name:<30} {medians[name]:>15.1f} {t.min():>9.1f} {t.max():>9.1f} "
              f"{t.sum() / 1e3:>9.2f} {worst[name]:>13.1e}")
    ratio = medians["(a) rebuild per move"] / medians["(b) parameterised (DPP)"]
    print(f"ratio rebuild / parameterised: {ratio:.2f}x")
    if args.scs_warm:
        cold, warm = (np.concatenate([e["iters"] for e in extra[k]]) for k in
                      ["(c0) parameterised, SCS cold", "(c) parameterised, SCS warm"])
        speedup = medians["(c0) parameterised, SCS cold"] / medians["(c) parameterised, SCS warm"]
        print(f"SCS iterations per move, median: cold {np.median(cold):.0f}, "
              f"warm {np.median(warm):.0f}; ratio cold / warm median time: {speedup:.2f}x")
    per_beta = np.asarray(values["(a) rebuild per move"][0])
    print("optimum per beta (a): " + ", ".join(f"{v:.6g}" for v in per_beta))
    bad = {k: w for k, w in worst.items() if w > AGREE}
    assert not bad, f"optima of the variants differ by more than {AGREE:g} relative: {bad}"
    print(f"optima of all variants agree to {max(worst.values()):.1e} relative (<= {AGREE:g})")
    print(f"load    : {load_average()} (1, 5, 15 min) at the end")


if __name__ == "__main__":
    main()
