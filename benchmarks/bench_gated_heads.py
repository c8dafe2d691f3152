"""Seconds per FISTA iteration of the convex heads, the solver's fast path against its reference
path, in one process, on notebook 05's CPU sizes.

Both paths run ``cal.solvers.fit_head`` (float64, cross-entropy on mean-pooled logits, the same
beta, data, gates and start) for ``--iters`` iterations with the stopping test every
``--check-every`` iterations (the test is part of an iteration's cost, as in a real run):

* reference: ``design=False, prox='svd', zero_test=False`` -- the solver before the fast path: f
  and its gradient by autograd through ``head.forward`` (which recomputes the data products --
  gate masks times tokens, per-token Gram matrices -- at every call), a full SVD of every block
  per prox, and the stopping test :func:`cal.solvers.evaluate` (autograd adjoint + SVD);
* fast (the default): the stacked design built once, the prox by the Gram route
  (:func:`cal.solvers.svt_gram`: only the eigenpairs above tau^2, by LAPACK's partial
  eigensolver :func:`cal.solvers.top_eigh` once the iterates' rank is small), one product with
  the design per iteration (from the prox's low-rank factors) and one with its transpose,
  full-size temporaries in buffers allocated once, the stopping test from the design with an
  upper-bounded dual norm (:func:`cal.solvers.spectral_upper`).

A third run, fast with ``dtype='float32'`` (float32 iterations; the returned certificate is
still float64), shows what single precision adds.

Seconds per iteration come from each fit's history (first to last stopping test: set-up and the
final float64 certificate left out, see :func:`cal.solvers.seconds_per_iteration`); the set-up
(building the design) is printed apart.  ``--clock cpu`` stamps that history with the thread's
CPU time (``time.thread_time``) instead of the wall clock: every computation runs on the calling
thread here (one torch thread, one BLAS thread), so the CPU time is the work done, and it moves
less than the wall clock when other jobs share the cores.  The two paths take the same steps, so the objective
after ``--iters`` iterations is printed for both with their relative difference (round-off only).

Data: by default random tokens of the notebook's fast shapes (``--n 96 --s 16 --d 8 --classes
96``, N(0, 1) tokens, uniform labels, ``--seed``); ``--data-root ROOT`` uses notebook 05's own
features instead (``cifar.prepare_features`` + ``cifar.explore.small_features`` at ``--n``
train images, d = 8, 16 tokens: read from ROOT's cache, extracted there if missing).

    python benchmarks/bench_gated_heads.py                    # about 2 min on 2 shared cores
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
from bench_slider_resolve import print_machine  # same folder: the script's path

import cvxattn_lib as cal

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


def run(name, X, y, args, reference: bool, dtype: str = "float64"):
    kind, act, pool, opts = HEADS[name]
    XX = X.mean(axis=1) if pool else X
    t0 = time.perf_counter()
    fista_mod = importlib.import_module("cvxattn_lib.solvers.fista")
    if args.clock == "cpu":  # the history's time stamps: the thread's CPU seconds
        fista_mod.time = types.SimpleNamespace(perf_counter=time.thread_time)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # max_iter reached: on purpose
            fit = cal.solvers.fit_head(kind, XX, y, args.beta, activation=act, loss="cross_entropy",
                                       device="cpu", seed=args.seed, max_iter=args.iters, tol=1e-12,
                                       check_every=args.check_every, progress=False, dtype=dtype,
                                       **opts, **(REFERENCE if reference else {}))
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
        new = run(name, X, y, args, reference=False)
        f32 = run(name, X, y, args, reference=False, dtype="float32")
        fr, fn = ref["fit"], new["fit"]
        diff = abs(fr.history[-1][1] - fn.history[-1][1]) / abs(fr.history[-1][1])
        rows.append((name, fr.head.shape, ref, new, f32, diff))
        print(f"  {name}: reference {ref['per_it']:.3f} s/it, fast {new['per_it']:.4f} s/it, "
              f"fast float32 {f32['per_it']:.4f} s/it", flush=True)
    print("\n| head | lifted Z (P, p, q) | reference (s/it) | fast (s/it) | speed-up | fast, float32 "
          "iterations (s/it) | speed-up | fast set-up (s) | objective after the last iteration, "
          "reference vs fast, relative difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, shape, ref, new, f32, diff in rows:
        print(f"| {name} | {tuple(shape)} | {ref['per_it']:.3f} | {new['per_it']:.4f} | "
              f"{ref['per_it'] / new['per_it']:.1f}x | {f32['per_it']:.4f} | "
              f"{ref['per_it'] / f32['per_it']:.1f}x | {new['setup']:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
