"""How the Mixer and FNO convex programs grow with the number of tokens s and channels d.

For each head -- Mixer linear, Mixer gated ReLU (``--gates`` gates), FNO shared circulant, FNO
spectral -- and each size, one random problem X (n, s, d), Y (n, s, c) (seeded) is solved with
``cal.convex.fit_mixer`` / ``cal.convex.fit_fno`` at ``--beta``; the clock covers the whole call
(design, CVXPY problem, compilation, solve), as a notebook cell or widget waits for it.  Heads are
interleaved over ``--repeats`` so drift on a shared machine hits all alike; medians are reported.

Two sweeps: s over ``--s-list`` at d = ``--d-fixed``, and d over ``--d-list`` at s = ``--s-fixed``.
Per row: the lifted variables (shapes and real entries: Mixer P x (s^2, dc); circulant (s, dc);
spectral K = s//2+1 blocks (d, c), complex at paired modes), how the nuclear norm was posed (one
(p+q) PSD cone, or p small cones for tall matrices, see ``cvxattn_lib.convex.lifted``), the solver,
the median seconds, and the certificate's relative gap (so every timed solve was also checked).
Growth ratios between consecutive sizes of a sweep -- time and lifted entries -- and the
exponent log(t2/t1)/log(x2/x1) are measured in the same run.

    python benchmarks/bench_mixer_fno.py                      # about 1-2 min on 2 cores
    python benchmarks/bench_mixer_fno.py --s-list 4 8 --d-list 2 4 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_machine import load_average, print_machine  # same folder: the script's path
from tqdm.auto import tqdm

import cvxattn_lib as cal
import cvxattn_lib.convex.lifted as lifted_module
from cvxattn_lib.convex.lifted import SMALL_CONE, TALL

HEADS = ("mixer linear", "mixer gated", "fno circulant", "fno spectral")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8, help="samples (default 8)")
    p.add_argument("--c", type=int, default=2, help="outputs per token (default 2)")
    p.add_argument("--s-list", type=int, nargs="+", default=[4, 8, 16], help="tokens (4 8 16)")
    p.add_argument("--d-fixed", type=int, default=2, help="channels in the s sweep (2)")
    p.add_argument("--d-list", type=int, nargs="+", default=[1, 2, 4], help="channels (1 2 4)")
    p.add_argument("--s-fixed", type=int, default=8, help="tokens in the d sweep (8)")
    p.add_argument("--gates", type=int, default=2, help="gates of the gated Mixer (2)")
    p.add_argument("--beta", type=float, default=0.1, help="weight decay (0.1)")
    p.add_argument("--repeats", type=int, default=2, help="repeats, interleaved (2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and gates (0)")
    p.add_argument("--one-cone", type=int, nargs="*", default=None, metavar="S",
                   help="also time the linear Mixer at these s (default: none; try 4 8) with "
                        "CVXPY's single (p+q) PSD cone, against the small cones (slow: ~10 s at 8)")
    args = p.parse_args(argv)
    if min(args.s_list + args.d_list + [args.n, args.c, args.gates, args.repeats]) < 1:
        p.error("sizes, --gates and --repeats must be >= 1")
    return args


def lifted(head: str, s: int, d: int, c: int, P: int) -> tuple[str, int, str]:
    """(shapes, real entries, how the nuclear norm is posed) of a head's lifted variables."""
    def form(p, q):
        one = p + q <= SMALL_CONE or max(p, q) < TALL * min(p, q)
        return "fro" if min(p, q) == 1 else ("1 cone" if one else f"{max(p, q)} cones")
    if head.startswith("mixer"):
        k = P if head == "mixer gated" else 1
        return f"{k} x ({s * s}, {d * c})", k * s * s * d * c, form(s * s, d * c)
    if head == "fno circulant":
        return f"({s}, {d * c})", s * d * c, form(s, d * c)
    K = s // 2 + 1
    paired = K - 1 - (s % 2 == 0)
    return f"{K} x ({d}, {c})", (K + paired) * d * c, form(d, c)


def fit(head: str, X, Y, beta, P, seed):
    if head == "mixer linear":
        return cal.convex.fit_mixer(X, Y, beta)
    if head == "mixer gated":
        return cal.convex.fit_mixer(X, Y, beta, "gated_relu", n_gates=P, seed=seed)
    return cal.convex.fit_fno(X, Y, beta, head.split()[1])


def sweep(sizes, args, bar):
    """{(head, s, d): (median s, solver, rel_gap)} over ``sizes`` [(s, d), ...], interleaved."""
    times = {(h, s, d): [] for s, d in sizes for h in HEADS}
    info = {}
    for _ in range(args.repeats):
        for s, d in sizes:
            rng = np.random.default_rng(args.seed)
            X, Y = rng.standard_normal((args.n, s, d)), rng.standard_normal((args.n, s, args.c))
            for h in HEADS:
                t0 = time.perf_counter()
                f = fit(h, X, Y, args.beta, args.gates, args.seed)
                times[h, s, d].append(time.perf_counter() - t0)
                info[h, s, d] = (f.solver, f.certificate()["rel_gap"])
                bar.update()
    return {k: (float(np.median(v)), *info[k]) for k, v in times.items()}


def report(title, key, sizes, res, args):
    """The table of one sweep and its growth ratios; ``key`` 0 (s) or 1 (d) is what varies."""
    name = "sd"[key]
    print(f"\n{title}")
    print(f"{'head':<14} {'s':>3} {'d':>3} {'lifted Z':>16} {'entries':>8} {'norm as':>9} "
          f"{'solver':>9} {'median s':>9} {'rel gap':>9}")
    for h in HEADS:
        for s, d in sizes:
            shape, entries, how = lifted(h, s, d, args.c, args.gates)
            t, solver, gap = res[h, s, d]
            print(f"{h:<14} {s:>3} {d:>3} {shape:>16} {entries:>8} {how:>9} {solver:>9} "
                  f"{t:>9.3f} {gap:>9.1e}")
    print(f"growth when {name} grows (time ratio, entries ratio, time exponent "
          f"log(t2/t1)/log({name}2/{name}1)):")
    for h in HEADS:
        parts = []
        for a, b in zip(sizes, sizes[1:]):
            ta, tb = res[h, a[0], a[1]][0], res[h, b[0], b[1]][0]
            ea = lifted(h, *a, args.c, args.gates)[1]
            eb = lifted(h, *b, args.c, args.gates)[1]
            expo = np.log(tb / ta) / np.log(b[key] / a[key])
            parts.append(f"{name} {a[key]}->{b[key]}: x{tb / ta:.1f} time, x{eb / ea:.1f} entries, "
                         f"exp {expo:.1f}")
        print(f"  {h:<14} " + "; ".join(parts))


def compare_cones(args):
    """The linear Mixer at s in --one-cone, d = --d-fixed: one (p+q) cone vs p small cones."""
    print(f"\nnuclear norm of Z (s^2, dc) posed as one PSD cone vs s^2 small cones (linear Mixer, "
          f"d = {args.d_fixed}); same problem, optima compared")
    print(f"{'s':>3} {'one cone s':>11} {'small cones s':>14} {'ratio':>7} {'rel diff':>9}")
    for s in args.one_cone:
        rng = np.random.default_rng(args.seed)
        X, Y = rng.standard_normal((args.n, s, args.d_fixed)), rng.standard_normal((args.n, s, args.c))
        out = {}
        for name, limit in (("one", 10**9), ("small", 0)):
            lifted_module.SMALL_CONE = limit
            try:
                t0 = time.perf_counter()
                f = cal.convex.fit_mixer(X, Y, args.beta)
                out[name] = (time.perf_counter() - t0, f.value)
            finally:
                lifted_module.SMALL_CONE = SMALL_CONE
        rel = abs(out["one"][1] - out["small"][1]) / out["one"][1]
        print(f"{s:>3} {out['one'][0]:>11.2f} {out['small'][0]:>14.2f} "
              f"{out['one'][0] / out['small'][0]:>7.1f} {rel:>9.1e}")


def main(argv=None):
    args = parse_args(argv)
    print_machine()
    print(f"problem : n={args.n}, c={args.c}, beta={args.beta}, {args.gates} gates, seed "
          f"{args.seed}; {args.repeats} repeats, heads interleaved; seconds per fit call (design, "
          f"CVXPY build, compile, solve), median")
    s_sizes = [(s, args.d_fixed) for s in args.s_list]
    d_sizes = [(args.s_fixed, d) for d in args.d_list]
    total = len(HEADS) * args.repeats * (len(s_sizes) + len(d_sizes))
    t0 = time.perf_counter()
    with tqdm(total=total, desc="fits") as bar:
        res_s = sweep(s_sizes, args, bar)
        res_d = sweep(d_sizes, args, bar)
    report(f"tokens s (d = {args.d_fixed})", 0, s_sizes, res_s, args)
    report(f"channels d (s = {args.s_fixed})", 1, d_sizes, res_d, args)
    if args.one_cone:
        compare_cones(args)
    gaps = [v[2] for v in list(res_s.values()) + list(res_d.values())]
    print(f"\nlargest certificate rel gap: {max(gaps):.1e}; wall {time.perf_counter() - t0:.0f} s")
    print(f"load    : {load_average()} (1, 5, 15 min) at the end")


if __name__ == "__main__":
    main()
