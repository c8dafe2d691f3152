"""How the self-attention convex programs grow with samples n, tokens s and features d (CVXPY).

For linear attention (one lifted Z, d^2 x dc) and gated-ReLU attention (``--gates`` lifted
matrices), one random problem X (n, s, d), Y (n, s, c) (seeded) per size is solved with
``cal.convex.fit_self_attention`` at ``--beta``.  The clock covers the whole call (design matrices,
CVXPY problem, compilation, solve), as a notebook cell waits for it.  Each solve runs in a fresh
subprocess so that its peak resident memory (``ru_maxrss``) is its own: reported as the peak minus
the subprocess's footprint after imports (the baseline, measured in the same subprocess).

Three sweeps: n over ``--n-list`` (s, d fixed), s over ``--s-list``, d over ``--d-list``.  Per row:
lifted entries (P x d^2 x dc), design-matrix entries (P x n s x d^3, what CVXPY multiplies), the
solver, seconds, peak extra memory and the certificate's relative gap (every solve is checked).
Growth ratios against the previous size and the exponent log(t2/t1)/log(x2/x1) are measured in the
same run.

    python benchmarks/bench_attention_cvxpy.py                 # about 5 min on 2 cores
    python benchmarks/bench_attention_cvxpy.py --quick         # a smaller sweep, under a minute
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time

import numpy as np
from bench_machine import print_machine  # same folder: the script's path
from tqdm.auto import tqdm

import cvxattn_lib as cal


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-list", type=int, nargs="+", default=[10, 40, 160, 640])
    p.add_argument("--s-list", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--d-list", type=int, nargs="+", default=[2, 3, 4, 5])
    p.add_argument("--n", type=int, default=10, help="samples when n is fixed (default 10)")
    p.add_argument("--s", type=int, default=4, help="tokens when s is fixed (default 4)")
    p.add_argument("--d", type=int, default=2, help="features when d is fixed (default 2)")
    p.add_argument("--c", type=int, default=2, help="outputs per token (default 2)")
    p.add_argument("--gates", type=int, default=4, help="gates of the gated program (default 4)")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--quick", action="store_true", help="n in (10, 20), s in (4, 8), d in (2, 3)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_list, args.s_list, args.d_list = [10, 20], [4, 8], [2, 3]
    return args


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (ru_maxrss is KiB on Linux, B on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def solve_once(activation: str, n: int, s: int, d: int, c: int, gates: int, beta: float) -> dict:
    """Runs in a fresh subprocess: one fit, timed, with its peak memory above the baseline."""
    import warnings

    warnings.simplefilter("ignore")  # CVXPY's "inaccurate" warnings; the certificate is reported
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((n, s, d)), rng.standard_normal((n, s, c))
    cal.convex.fit_self_attention(X[:2, :2, :2], Y[:2, :2, :2], beta)  # warm imports and caches
    base = peak_rss_mb()
    t0 = time.perf_counter()
    fit = cal.convex.fit_self_attention(X, Y, beta, activation=activation, n_gates=gates, seed=0)
    seconds = time.perf_counter() - t0
    P = len(fit.Z)
    return {"seconds": seconds, "extra_mb": max(peak_rss_mb() - base, 0.0), "solver": fit.solver,
            "lifted": P * d * d * d * c, "design": P * n * s * d**3, "P": P,
            "rel_gap": fit.certificate()["rel_gap"], "heads": fit.n_heads}


def report(name: str, rows: list[tuple]) -> None:
    print(f"\n## sweep over {name}")
    print(f"{'head':>10} | {name:>3} | {'lifted':>7} | {'design':>9} | {'solver':>8} | {'s':>7} | "
          f"{'+MB':>6} | {'rel gap':>8} | {'t ratio':>7} | {'exp':>5} | {'MB ratio':>8}")
    prev: dict = {}
    for act, x, r in rows:
        ratio = exp = mb = ""
        if act in prev:
            x0, r0 = prev[act]
            ratio = f"{r['seconds'] / r0['seconds']:.2f}"
            exp = f"{np.log(r['seconds'] / r0['seconds']) / np.log(x / x0):.2f}"
            mb = f"{r['extra_mb'] / max(r0['extra_mb'], 1e-9):.2f}" if r0["extra_mb"] > 1 else "-"
        print(f"{act:>10} | {x:>3} | {r['lifted']:>7} | {r['design']:>9} | {r['solver']:>8} | "
              f"{r['seconds']:7.2f} | {r['extra_mb']:6.1f} | {r['rel_gap']:8.1e} | {ratio:>7} | "
              f"{exp:>5} | {mb:>8}")
        prev[act] = (x, r)


def main(argv=None):
    a = parse_args(argv)
    print("# self-attention convex programs in CVXPY: time and memory against n, s, d")
    print_machine()
    print(f"sizes   : c = {a.c}, beta = {a.beta}, gated with {a.gates} gates; each solve in a fresh "
          "subprocess; ratios are against the previous size of the same head, in this run")
    acts = ("linear", "gated")
    ctx = mp.get_context("spawn")
    results = {}
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for name, sizes, make in [
            ("n", a.n_list, lambda x: (x, a.s, a.d, a.c, a.gates, a.beta)),
            ("s", a.s_list, lambda x: (a.n, x, a.d, a.c, a.gates, a.beta)),
            ("d", a.d_list, lambda x: (a.n, a.s, x, a.c, a.gates, a.beta)),
        ]:
            rows = []
            for x in tqdm(sizes, desc=f"sweep {name}", leave=False):
                for act in acts:
                    activation = "linear" if act == "linear" else "gated_relu"
                    rows.append((act, x, pool.apply(solve_once, (activation, *make(x)))))
            results[name] = rows
            report(name, rows)
    worst = max(abs(r["rel_gap"]) for rows in results.values() for _, _, r in rows)
    print(f"\nlargest certified relative gap over all solves: {worst:.1e}")
    return results


if __name__ == "__main__":
    main()
