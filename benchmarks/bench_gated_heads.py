"""Seconds per FISTA iteration of the convex heads, the solver's fast path against its reference
path, in one process, on notebook 05's CPU sizes.

Both paths run ``cal.solvers.fit_head`` (float64, cross-entropy on mean-pooled logits, the same
beta, data, gates and start) for ``--iters`` iterations with the stopping test every
``--check-every`` iterations (the test is part of an iteration's cost, as in a real run):

* reference: ``design=False, prox='svd', zero_test=False`` -- the solver before the fast path: f
  and its gradient by autograd through ``head.forward`` (which recomputes the data products --
  gate masks times tokens, per-token Gram matrices -- at every call), a full SVD of every block
  per prox, and the stopping test :func:`cal.solvers.evaluate` (autograd adjoint + SVD);
* exact fast (``prox='gram'``, the fast path before the inexact prox): the stacked design built
  once, the prox by the Gram route (:func:`cal.solvers.svt_gram`: only the eigenpairs above
  tau^2, by LAPACK's partial eigensolver :func:`cal.solvers.top_eigh` once the iterates' rank is
  small), one product with the design per iteration (from the prox's low-rank factors) and one
  with its transpose, full-size temporaries in buffers allocated once, the stopping test from
  the design with an upper-bounded dual norm (:func:`cal.solvers.spectral_upper`);
* fast (the default): the same, and for heads with wide blocks of short side >= 128 (gated
  Mixer, linear Mixer) the low-rank loop once the rank is small: the iterates kept as factors,
  the step as an operator, the prox inexact (:func:`cal.solvers.svt_subspace`, a warm-started
  subspace step accepted while its error bound is at most 0.5 x the previous step's length; the
  exact prox every 50 iterations); its steps differ from the exact path's, the certificate is
  exact float64 all the same.

A fourth run, fast with ``dtype='float32'`` (float32 iterations; the returned certificate is
still float64), shows what single precision adds.

Time to certificate (``--certify HEAD ...``, default the gated Mixer): the exact fast path, the
fast path and the fast path with float32 iterations (``--certify-reference`` adds the reference
path) each fitted to a certified relative gap of ``--certify-tol`` (1e-6) with the stopping
test every 10 iterations: the first stopping test at which the gap is <= 1e-3 and <= 1e-6,
as iterations and seconds (the fit's own history, set-up included), and the values reached, so
that an inexact prox that needs more iterations shows.

Seconds per iteration come from each fit's history (first to last stopping test: set-up and the
final float64 certificate left out, see :func:`cal.solvers.seconds_per_iteration`); the set-up
(building the design) is printed apart.  ``--clock cpu`` stamps that history with the thread's
CPU time (``time.thread_time``) instead of the wall clock: every computation runs on the calling
thread here (one torch thread, one BLAS thread), so the CPU time is the work done, and it moves
less than the wall clock when other jobs share the cores.  The reference and exact fast paths
take the same steps, so their objectives after ``--iters`` iterations differ by round-off; the
fast path's inexact prox takes other steps: its difference is printed as it is.

Data: by default random tokens of the notebook's fast shapes (``--n 96 --s 16 --d 8 --classes
96``, N(0, 1) tokens, uniform labels, ``--seed``); ``--data-root ROOT`` uses notebook 05's own
features instead (``cifar.prepare_features`` + ``cifar.explore.small_features`` at ``--n``
train images, d = 8, 16 tokens: read from ROOT's cache, extracted there if missing).

    python benchmarks/bench_gated_heads.py                    # about 4 min on 2 shared cores
    python benchmarks/bench_gated_heads.py --heads mlp_gated_relu attention_gated_relu --iters 20
    python benchmarks/bench_gated_heads.py --clock cpu        # CPU seconds, on a busy machine
"""

from __future__ import annotations

import argparse
import importlib
import time
import types
import warnings

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import cvxattn_lib as cal
from bench_machine import print_machine  # same folder: the script's path

#: head name -> (fit_head kind, activation, pooled input, fit_head options)
HEADS = {
    "mlp_gated_relu": ("mlp", "gated_relu", True, {"n_gates": 16}),
    "attention_gated_relu": ("self_attention", "gated_relu", False, {"n_gates": 8}),
    "mixer_gated_relu": ("mixer", "gated_relu", False, {"n_gates": 8}),
    "attention_linear": ("self_attention", "linear", False, {}),
    "mixer": ("mixer", "linear", False, {}),
    "fno": ("fno", "circulant", False, {}),
}
REFERENCE = {"design": False, "prox": "svd", "zero_test": False}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", default=["mlp_gated_relu", "attention_gated_relu",
                                                  "mixer_gated_relu"], choices=list(HEADS),
                   help="heads to time (default: the three gated heads)")
    p.add_argument("--n", type=int, default=96, help="training images (96: notebook 05 fast)")
    p.add_argument("--s", type=int, default=16, help="tokens (16)")
    p.add_argument("--d", type=int, default=8, help="features per token (8)")
    p.add_argument("--classes", type=int, default=96, help="classes of the random labels (96)")
    p.add_argument("--beta", type=float, default=0.1, help="weight decay (0.1, notebook 05's)")
    p.add_argument("--iters", type=int, default=30, help="iterations per fit (30)")
    p.add_argument("--check-every", type=int, default=10,
                   help="stopping test period (10, fit_head's default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and gates (0)")
    p.add_argument("--data-root", default=None, help="use notebook 05's features from this root")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="seconds per iteration by the wall clock (default) or the thread's CPU time")
    p.add_argument("--certify", nargs="*", default=["mixer_gated_relu"], choices=list(HEADS),
                   help="heads timed to a certified gap (default: the gated Mixer; none: skip)")
    p.add_argument("--certify-tol", type=float, default=1e-6,
                   help="certified relative gap the time-to-certificate fits stop at (1e-6)")
    p.add_argument("--certify-max-iter", type=int, default=5000,
                   help="iteration cap of the time-to-certificate fits (5000)")
    p.add_argument("--certify-reference", action="store_true",
                   help="also time the reference path to the certificate (slow: ~0.4 s/it)")
    args = p.parse_args(argv)
    if args.iters < 2 * args.check_every:
        p.error("--iters must be at least 2 x --check-every (two stopping tests to time between)")
    return args


def data(args):
    if args.data_root is None:
        rng = np.random.default_rng(args.seed)
        X = rng.standard_normal((args.n, args.s, args.d))
        y = rng.integers(0, args.classes, args.n)
        return X, y, f"random N(0,1) tokens {X.shape}, {args.classes} label values"
    from cvxattn_lib import cifar

    prepared = cifar.prepare_features(args.data_root, backbone="gmlp_s16_224", n_train=args.n,
                                      n_test=max(args.n // 2, 1), seed=0, device="cpu",
                                      verbose=False, progress=False)
    f = cifar.explore.small_features(prepared, dim=args.d, tokens=args.s)
    return (f["train"].astype(np.float64), f["y_train"],
            f"notebook 05 features ({prepared['source']}) {f['train'].shape}")


def run(name, X, y, args, reference: bool, dtype: str = "float64", extra=None, iters=None,
        tol=1e-12):
    kind, act, pool, opts = HEADS[name]
    iters = iters or args.iters
    XX = X.mean(axis=1) if pool else X
    t0 = time.perf_counter()
    fista_mod = importlib.import_module("cvxattn_lib.solvers.fista")
    if args.clock == "cpu":  # the history's time stamps: the thread's CPU seconds
        fista_mod.time = types.SimpleNamespace(perf_counter=time.thread_time)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # max_iter reached: on purpose
            fit = cal.solvers.fit_head(kind, XX, y, args.beta, activation=act, loss="cross_entropy",
                                       device="cpu", seed=args.seed, max_iter=iters, tol=tol,
                                       check_every=args.check_every, progress=False, dtype=dtype,
                                       **opts, **(REFERENCE if reference else extra or {}))
    finally:
        fista_mod.time = time
    wall = time.perf_counter() - t0
    per_it = cal.solvers.seconds_per_iteration(fit)
    first = fit.history[0][3] - args.check_every * per_it  # time before the first iteration
    return {"fit": fit, "per_it": per_it, "setup": max(first, 0.0), "wall": wall}


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)  # as notebook 05
    threadpool_limits(1, user_api="blas")  # numpy's and scipy's BLAS too: all work on this thread
    print_machine()
    X, y, what = data(args)
    print(f"data    : {what}; beta = {args.beta:g}, {args.iters} iterations, stopping test every "
          f"{args.check_every}, float64, one torch thread, one BLAS thread; seconds: "
          f"{'wall clock' if args.clock == 'wall' else 'CPU time of the thread'}\n")
    rows = []
    for name in args.heads:
        ref = run(name, X, y, args, reference=True)
        exact = run(name, X, y, args, reference=False, extra={"prox": "gram"})
        new = run(name, X, y, args, reference=False)
        f32 = run(name, X, y, args, reference=False, dtype="float32")
        v_ref = ref["fit"].history[-1][1]
        d_exact = abs(exact["fit"].history[-1][1] - v_ref) / abs(v_ref)
        d_new = abs(new["fit"].history[-1][1] - v_ref) / abs(v_ref)
        rows.append((name, ref["fit"].head.shape, ref, exact, new, f32, d_exact, d_new))
        print(f"  {name}: reference {ref['per_it']:.3f} s/it, exact fast {exact['per_it']:.4f} s/it, "
              f"fast {new['per_it']:.4f} s/it, fast float32 {f32['per_it']:.4f} s/it "
              f"(proxes of the fast path: {new['fit'].info.get('proxes')})", flush=True)
    print("\n| head | lifted Z (P, p, q) | reference (s/it) | exact fast, prox='gram' (s/it) | "
          "speed-up | fast (s/it) | speed-up | fast, float32 iterations (s/it) | speed-up | "
          f"fast set-up (s) | objective after {args.iters} iterations, relative difference to "
          "the reference: exact fast / fast |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, shape, ref, exact, new, f32, d_exact, d_new in rows:
        r = ref["per_it"]
        print(f"| {name} | {tuple(shape)} | {r:.3f} | {exact['per_it']:.4f} | "
              f"{r / exact['per_it']:.1f}x | {new['per_it']:.4f} | {r / new['per_it']:.1f}x | "
              f"{f32['per_it']:.4f} | {r / f32['per_it']:.1f}x | {new['setup']:.2f} | "
              f"{d_exact:.1e} / {d_new:.1e} |")
    if args.certify:
        certify(X, y, args)


def first_at(fit, gap):
    """(iteration, seconds) of the first stopping test with a certified gap <= ``gap``, or None."""
    for it, _, g, t in fit.history:
        if g <= gap:
            return it, t
    return None


def certify(X, y, args):
    """Iterations and seconds to certified relative gaps 1e-3 and ``--certify-tol``."""
    paths = [("exact fast, prox='gram'", False, "float64", {"prox": "gram"}),
             ("fast", False, "float64", {}), ("fast, float32 iterations", False, "float32", {})]
    if args.certify_reference:
        paths.insert(0, ("reference", True, "float64", {}))
    gaps = sorted({1e-3, args.certify_tol}, reverse=True)
    print(f"\nTime to a certified relative gap (stopping test every {args.check_every}; seconds "
          f"from the call, set-up included; cap {args.certify_max_iter} iterations):\n")
    head = " | ".join(f"iterations to {g:g} | seconds to {g:g}" for g in gaps)
    print(f"| head | path | {head} | value reached | its certified gap | value vs the exact "
          "path's, relative | proxes (subspace / exact / rejected tries) |")
    print("|---|---|" + "---|---|" * len(gaps) + "---|---|---|---|")
    for name in args.certify:
        fits = []
        for label, reference, dtype, extra in paths:
            out = run(name, X, y, args, reference=reference, dtype=dtype, extra=extra,
                      iters=args.certify_max_iter, tol=args.certify_tol)
            fits.append((label, out["fit"]))
        v_exact = dict(fits)["exact fast, prox='gram'"].value
        for label, fit in fits:
            cells = []
            for g in gaps:
                hit = first_at(fit, g)
                cells += ["not reached", "-"] if hit is None else [str(hit[0]), f"{hit[1]:.1f}"]
            pr = fit.info.get("proxes")
            pr = "-" if not pr else f"{pr['subspace']} / {pr['exact']} / {pr['rejected']}"
            print(f"| {name} | {label} | {' | '.join(cells)} | {fit.value:.10g} | "
                  f"{fit.certificate.rel_gap:.1e} | {abs(fit.value - v_exact) / abs(v_exact):.1e} "
                  f"| {pr} |", flush=True)


if __name__ == "__main__":
    main()
