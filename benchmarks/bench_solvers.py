"""Torch solvers of the convex heads (``cal.solvers``) against CVXPY, and against the non-convex twins.

1. **Scaling** (linear self-attention, squared loss): wall time of ``cal.solvers.fit_head`` with
   FISTA run until its float64 certificate proves a relative gap <= 1e-6 (so its objective is
   within 1e-6 of the optimum, relatively, for certain), against ``cal.convex.fit_self_attention``
   with Clarabel and with SCS (the library's tight tolerances), as n grows; then the issue's target
   size n=1000, s=16, d=8, c=10.  Every run is a fresh forked process with a time limit (and a
   memory limit for CVXPY), so a solver that runs out of time or memory is reported as such.  Peak
   memory: the growth of the child's peak resident set (``ru_maxrss``) over its start
   (``tracemalloc`` does not see torch's or Clarabel's native allocations), and
   ``torch.cuda.max_memory_allocated`` on CUDA.  Ratios = CVXPY time / torch time, same run.
   beta = 0.05 * beta_max, where beta_max = ||A*(Y)||_2 is the smallest beta with Z* = 0.
2. **Throughput**: forward + backward per second on one batch, for each convex head (lifted Z, and
   its Burer-Monteiro factors U V^T with r columns per gate) against its non-convex twin
   (``cal.nonconvex``) with the same number of heads, at equal batch size, float32.

    python benchmarks/bench_solvers.py --quick            # ~6 min on 2 CPU cores
    python benchmarks/bench_solvers.py                    # larger grid, longer CVXPY limits
    python benchmarks/bench_solvers.py --device cuda      # GPU: CVXPY limited to 60 s, < 5 min
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import time
import warnings

import numpy as np
import torch

import cvxattn_lib as cal
from cvxattn_lib.nonconvex import MultiHeadAttention, TwoLayerNet
from cvxattn_lib.nonconvex.mixer import FNOHead, MixerHead

TOL = 1e-6


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="torch device for cal.solvers (default: CUDA "
                   "when available, else cpu)")
    p.add_argument("--quick", action="store_true", help="small grid and short CVXPY limits")
    p.add_argument("--cvxpy-timeout", type=float, default=None, help="seconds per CVXPY solve "
                   "(default 120 quick, 600 full)")
    p.add_argument("--cvxpy-memory-gb", type=float, default=12.0, help="address-space limit of a "
                   "CVXPY child process")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    return p.parse_args(argv)


# -- problems -------------------------------------------------------------------------------------
def problem(n, s, d, c, seed=0):
    """X ~ N(0, 1); Y = a 3-head linear-attention teacher (scaled to unit token RMS) + noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, s, d))
    teacher = MultiHeadAttention.from_weights(
        {"W1": rng.standard_normal((3, d, d)), "W2": rng.standard_normal((3, d, c))}, "linear")
    T = teacher.predict(X)
    Y = T / np.sqrt(np.mean(T**2)) + 0.5 * rng.standard_normal((n, s, c))
    return X, Y


def beta_for(X, Y, frac=0.05):
    """frac * ||A*(Y)||_2 in numpy (the parent process never runs torch before forking):
    A*(G)[a d + k, l c + b] = sum_i Gram_i[k, l] sum_t X_i[t, a] G_i[t, b]."""
    gram = np.einsum("iuk,iul->ikl", X, X)
    XG = np.einsum("ita,itb->iab", X, Y)
    d, c = X.shape[2], Y.shape[2]
    M = np.einsum("ikl,iab->aklb", gram, XG).reshape(d * d, d * c)
    return frac * float(np.linalg.norm(M, 2))


# -- isolated runs ----------------------------------------------------------------------------------
def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _task_cvxpy(n, s, d, c, beta, solver):
    X, Y = problem(n, s, d, c)
    t0 = time.perf_counter()
    fit = cal.convex.fit_self_attention(X, Y, beta, solver=solver)
    wall = time.perf_counter() - t0
    cert = fit.certificate()
    return dict(wall=wall, value=fit.value, lower=cert["lower_bound"], rel_gap=cert["rel_gap"])


def _task_torch(n, s, d, c, beta, device, method):
    X, Y = problem(n, s, d, c)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    opts = (dict(tol=TOL, batch_size=2048) if method == "fista"
            else dict(rank=16, epochs=30, batch_size=100, polish_iter=300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = cal.solvers.fit_head("self_attention", X, Y, beta, method=method, device=device,
                                   progress=False, **opts)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    wall = time.perf_counter() - t0
    out = dict(wall=wall, value=res.value, lower=res.lower_bound, rel_gap=res.rel_gap,
               iterations=res.iterations, converged=res.converged)
    if dev.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


TASKS = {"cvxpy": _task_cvxpy, "torch": _task_torch}


def _child(conn, task, kwargs, mem_gb):
    if mem_gb:
        lim = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    base = _rss_mb()
    try:
        out = TASKS[task](**kwargs)
        out["status"] = "ok"
    except MemoryError:
        out = {"status": f"out of memory (MemoryError under a {mem_gb:g} GB address-space limit)"}
    except Exception as exc:  # a solver failure is a result here, not a crash of the benchmark
        out = {"status": f"{type(exc).__name__}: {str(exc)[:200]}"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_mb"] = peak - base
    conn.send(out)
    conn.close()


def isolated(task, timeout, mem_gb=None, **kwargs):
    """Run a task in a child with a wall-clock limit (and an address-space limit).  Children fork
    from a fork server that imported the libraries once and never ran a thread pool (forking the
    parent after torch/BLAS started threads can deadlock the child)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "torch", "cvxpy", "cvxattn_lib"])
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, task, kwargs, mem_gb))
    t0 = time.perf_counter()
    proc.start()
    if recv.poll(timeout):
        out = recv.recv()
        proc.join()
    else:
        proc.kill()
        proc.join()
        out = {"status": f"timeout (> {timeout:.0f} s)"}
    if proc.exitcode not in (0, None) and "status" not in out:
        out = {"status": f"killed (exit code {proc.exitcode}: out of memory?)"}
    out["outer_wall"] = time.perf_counter() - t0
    return out


FAILURES: list[str] = []


def _fmt(r, key="wall"):
    """Seconds, or a short failure code (the details are listed under the table)."""
    if r.get("status") == "ok":
        return f"{r[key]:8.2f}"
    if r["status"].startswith("timeout"):
        return "timeout"
    if r["status"].startswith("skipped"):
        return "skipped"
    FAILURES.append(r["status"])
    return f"fail[{len(FAILURES)}]"


def _ratio(r, ft, timeout):
    """CVXPY time / torch time (a lower bound when CVXPY timed out)."""
    if r.get("status") == "ok" and ft.get("status") == "ok":
        return f"{r['wall'] / ft['wall']:7.1f}x"
    if ft.get("status") == "ok" and r["status"].startswith("timeout"):
        return f">{timeout / ft['wall']:6.1f}x"
    return "    n/a"


def scaling(args, device):
    gpu = device.type == "cuda" and not args.quick  # the short GPU run: < 5 min in all
    timeout = args.cvxpy_timeout or (60.0 if args.quick or gpu else 600.0)
    if gpu:
        grid = [(200, 8, 4, 4), (1000, 8, 4, 4), (1000, 16, 8, 10), (10000, 16, 8, 10),
                (50000, 16, 8, 10)]
    elif args.quick:
        grid = [(50, 8, 4, 4), (200, 8, 4, 4), (1000, 8, 4, 4), (10, 16, 8, 10), (1000, 16, 8, 10)]
    else:
        grid = [(50, 8, 4, 4), (200, 8, 4, 4), (1000, 8, 4, 4), (4000, 8, 4, 4), (20, 16, 8, 10),
                (1000, 16, 8, 10), (10000, 16, 8, 10)]
    solvers = ["CLARABEL", "SCS"]
    cvxpy_max = 20_000 if device.type == "cuda" and not args.quick else np.inf  # n s token rows
    print(f"\n## 1. Scaling: linear self-attention, squared loss, beta = 0.05 beta_max; "
          f"torch FISTA to a certified relative gap <= {TOL:g} on {device}; "
          f"CVXPY limit {timeout:.0f} s and {args.cvxpy_memory_gb:g} GB\n")
    hdr = (f"{'n':>6} {'s':>3} {'d':>3} {'c':>3} {'lifted Z':>10} | {'FISTA s':>8} {'iters':>6} "
           f"{'gap':>8} {'peak MB':>8} | {'Clarabel s':>10} {'peak MB':>8} {'ratio':>7} | "
           f"{'SCS s':>8} {'ratio':>7} | {'|dv|/v':>8}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for n, s, d, c in grid:
        X, Y = problem(n, s, d, c)
        beta = beta_for(X, Y)
        ft = isolated("torch", timeout=max(timeout, 300.0), n=n, s=s, d=d, c=c, beta=beta,
                      device=str(device), method="fista")
        res = {"fista": ft}
        for solver in solvers:
            if n * s > cvxpy_max:
                res[solver] = {"status": "skipped (CVXPY: too large for this run's time budget)"}
                continue
            res[solver] = isolated("cvxpy", timeout=timeout, mem_gb=args.cvxpy_memory_gb, n=n, s=s,
                                   d=d, c=c, beta=beta, solver=solver)
        peak = ft.get("cuda_peak_mb", ft.get("peak_mb", float("nan")))

        cl = res["CLARABEL"]
        ref = next((res[k] for k in solvers if res[k].get("status") == "ok"), None)
        agree = (abs(ft["value"] - ref["value"]) / ref["value"]
                 if ft.get("status") == "ok" and ref is not None else float("nan"))
        gap = f"{ft['rel_gap']:8.1e}" if ft.get("status") == "ok" else "     n/a"
        its = f"{ft['iterations']:6d}" if ft.get("status") == "ok" else "   n/a"
        clpeak = f"{cl['peak_mb']:8.0f}" if cl.get("status") == "ok" else "     n/a"
        print(f"{n:6d} {s:3d} {d:3d} {c:3d} {f'{d * d}x{d * c}':>10} | {_fmt(ft):>8} {its} {gap} "
              f"{peak:8.0f} | {_fmt(cl):>10} {clpeak} {_ratio(cl, ft, timeout)} | {_fmt(res['SCS']):>8} "
              f"{_ratio(res['SCS'], ft, timeout)} | {agree:8.1e}", flush=True)
        rows.append((n, s, d, c, res))
    for k, why in enumerate(FAILURES, 1):
        print(f"  fail[{k}]: {why}")
    n, s, d, c = 1000, 16, 8, 10  # the target size
    X, Y = problem(n, s, d, c)
    bm = isolated("torch", timeout=300.0, n=n, s=s, d=d, c=c, beta=beta_for(X, Y),
                  device=str(device), method="burer_monteiro")
    if bm.get("status") == "ok":
        print(f"\nBurer-Monteiro at n={n}, s={s}, d={d}, c={c} (rank 16, 30 epochs of Adam on "
              f"batches of 100, 300 L-BFGS iterations, float64): {bm['wall']:.2f} s, certified "
              f"relative gap {bm['rel_gap']:.1e}, value {bm['value']:.6g}")
    else:
        print(f"\nBurer-Monteiro at n={n}: {bm['status']}")
    return rows


# -- throughput -------------------------------------------------------------------------------------
def _time(fn, reps, device):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(np.min(times))  # the least disturbed run: the machine may be shared


def _steps(head, Z, U, V, twin, Xt, Yt):
    """One forward + backward of the lifted head, its factored form, and the twin."""
    def convex():
        head.loss_of(head.forward(Z)).backward()

    def factored():
        head.loss_of(head.forward_factored(U, V)).backward()

    def nonconvex():
        twin.zero_grad()
        cal.losses.torch_loss(twin(Xt), Yt, "squared").backward()

    return convex, factored, nonconvex


def throughput(args, device):
    b = 256 if args.quick else 4096 if device.type == "cuda" else 1024
    reps = 10 if args.quick else 30
    if device.type == "cpu":  # one thread: reproducible on a shared machine, the same for all
        torch.set_num_threads(1)
    s, d, c, P, r = 16, 8, 10, 4, 2  # P gates, r heads per gate: twins have P r heads
    dt = torch.float32
    rng = np.random.default_rng(0)
    X3 = rng.standard_normal((b, s, d))
    Y3 = rng.standard_normal((b, s, c))
    X2, Y2 = X3[:, 0, :], Y3[:, 0, :]
    print(f"\n## 2. Throughput: forward + backward, batch {b}, float32, {device} "
          f"(s={s}, d={d}, c={c}; gated heads: {P} gates x {r} heads; samples / s, best of "
          f"{reps}{', one CPU thread' if device.type == 'cpu' else ''})\n")
    hdr = (f"{'head':<24} {'convex Z':>12} {'factored':>12} {'twin':>12} {'twin/Z':>8} "
           f"{'twin/fact':>9}")
    print(hdr)
    print("-" * len(hdr))
    gen = torch.Generator().manual_seed(0)
    cases = [
        ("mlp", "gated_relu", X2, Y2, lambda G: TwoLayerNet(d, P * r, c, "gated_relu",
                                                            gates=np.repeat(G, r, axis=1), dtype=dt)),
        ("self_attention", "linear", X3, Y3, lambda G: MultiHeadAttention(d, r, c, "linear",
                                                                          dtype=dt)),
        ("self_attention", "gated_relu", X3, Y3,
         lambda G: MultiHeadAttention(d, P * r, c, "gated_relu", gates=np.repeat(G, r, axis=0),
                                      dtype=dt)),
        ("mixer", "linear", X3, Y3, lambda G: MixerHead(s, d, r, c, "linear", dtype=dt)),
        ("mixer", "gated_relu", X3, Y3,
         lambda G: MixerHead(s, d, P * r, c, "gated_relu", gates=np.repeat(G, r, axis=0), dtype=dt)),
        ("fno", "circulant", X3, Y3, lambda G: FNOHead(s, d, r, c, "circulant", dtype=dt)),
        ("fno", "spectral", X3, Y3, lambda G: FNOHead(s, d, r, c, "spectral", dtype=dt)),
    ]
    out = []
    for kind, act, X, Y, twin_of in cases:
        gated = act == "gated_relu"
        head = cal.solvers.HEADS[kind].build(X, Y, act, None, P if gated else None, 0, "squared",
                                             device, dt)
        zd = head.zdtype()
        Z = (torch.randn(head.shape, generator=gen, dtype=torch.float64) * 0.01).to(device, zd)
        Z.requires_grad_(True)
        U = (torch.randn(*head.shape[:2], r, generator=gen, dtype=torch.float64)).to(device, zd)
        V = (torch.randn(head.shape[0], head.shape[2], r, generator=gen,
                         dtype=torch.float64)).to(device, zd)
        U.requires_grad_(True)
        V.requires_grad_(True)
        twin = twin_of(head.G).to(device)
        Xt = torch.as_tensor(X, dtype=dt, device=device)
        Yt = torch.as_tensor(Y, dtype=dt, device=device)
        tz, tf, tt = (_time(fn, reps, device) for fn in _steps(head, Z, U, V, twin, Xt, Yt))
        name = f"{kind} {act}"
        print(f"{name:<24} {b / tz:12.0f} {b / tf:12.0f} {b / tt:12.0f} {tz / tt:7.2f}x "
              f"{tf / tt:8.2f}x", flush=True)
        out.append((name, b / tz, b / tf, b / tt))
    print("\n(twin/Z and twin/fact: time of the convex head over time of its twin; <= 2 means the "
          "convex head is within 2x of the non-convex one)")
    return out


def main(argv=None):
    args = parse_args(argv)
    device = cal.device(args.device)
    print(f"# bench_solvers: {platform.platform()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, torch {torch.__version__}, cvxpy "
          f"{__import__('cvxpy').__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    if not args.skip_scaling:
        scaling(args, device)
    if not args.skip_throughput:
        throughput(args, device)


if __name__ == "__main__":
    main()
