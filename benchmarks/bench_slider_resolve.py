"""How long one move of each notebook's β slider takes: today's CVXPY re-solve against the
regularisation path computed when the explorer is built, at each notebook's full default size.

Sliders (the explorers of ``cal.widgets``, built as the notebooks build them, full mode):

* 01  ``mlp_beta_explorer``: spiral ``two_class_2d(n=40, kind="spiral", noise=0.05, seed=0)``, the
  exact ReLU program (every activation pattern; its path is solved with CVXPY on a working set of
  patterns with exact KKT checks, :mod:`cvxattn_lib.solvers.relu_path`; its "one CVXPY solve" is
  the full program, as an off-grid move solves it);
* 02  ``attention_rank_explorer``: ``attention_teacher(n=12, s=4, d=3, c=2, heads=2)``, linear attention;
* 03  ``clustering_explorer``: ``routing_clusters(n=30, s=6, K=3, values=1, noise=0.1)``, 16 gates;
* 04  ``mixer_beta_explorer``: 12 samples of 6 tokens, d = c = 2 (three programs per move).

For each slider, in one process:

(a) **CVXPY re-solve per move** (what the explorers did before the path): ``explorer.figure(b')``
    at ``b' = 1.001 b`` for slider positions ``b``; b' is off the slider's grid, so the explorer
    solves it with CVXPY (01: the compiled, parameterised program; 02-04: the program built and
    solved), then the figure is saved to PNG and rendered for display, as a move did before;
(b) **path, first visit**: explorers built with ``prerender=False``; ``slider.value = b`` renders
    the figure of a path point (no solve);
(c) **path, prerendered**: the same positions again (the default ``prerender=True`` renders every
    position at construction, so every move is this case): the PNG is shown;
(d) **one-off path**: building the explorer with ``cache=False`` (the path over every slider
    position, warm-started), against the median single CVXPY solve of (a) (solve only, no
    render).  ``path s`` is the path part of the construction: the wall time of the explorer's
    ``regularisation_path`` calls, each from its start to the certified fits (data, head, beta_max,
    every solve, every certificate); ``build s`` the whole construction with ``prerender=False``,
    which also renders the opening position; the figures are timed apart (``render s``: the
    figures of every position, the opening one included).

Prints one table: median (worst) ms per move of (a), (b), (c), the ratio (a) / (b), the path's wall
time and the ratio path / one CVXPY solve; with ``--json`` also writes it.

    python benchmarks/bench_slider_resolve.py                 # all four, full size (~10 min)
    python benchmarks/bench_slider_resolve.py --only 02 03 --moves 4
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from IPython.core.pylabtools import print_figure  # noqa: E402

import cvxattn_lib as cal  # noqa: E402
import cvxattn_lib.toydata  # noqa: E402,F401
import cvxattn_lib.widgets  # noqa: E402,F401
from cvxattn_lib import clustering  # noqa: E402
from cvxattn_lib.convex.fno import circulant  # noqa: E402
from bench_machine import load_average, print_machine  # noqa: E402  (same folder: the script's path)

OFF_GRID = 1.001  # (a) solves at b * OFF_GRID: off the slider's grid, so by CVXPY


def notebook_04_data(seed: int = 0):
    """Notebook 04's explorer data at its full size: a rank-one circular convolution plus noise."""
    rng = np.random.default_rng(seed)
    n, s, d, c = 12, 6, 2, 2
    X = rng.standard_normal((n, s, d))
    kernel, channels = np.array([0.5, 0.25, 0, 0, 0, 0.25]), np.outer([1.0, -0.5], [0.8, 0.6])
    Y = np.einsum("tu,nua,ab->ntb", circulant(kernel), X, channels)
    return X, Y + 0.05 * rng.standard_normal((n, s, c))


def builders():
    """name -> (description, build(cache: bool) -> explorer): the notebooks' calls, full size."""
    X1, y1 = cal.toydata.two_class_2d(n=40, kind="spiral", noise=0.05, seed=0)
    X2, Y2, _ = cal.toydata.attention_teacher(n=12, s=4, d=3, c=2, heads=2, noise=0.05, seed=0)
    X4, Y4 = notebook_04_data()
    quiet = dict(progress=False, prerender=False)
    return {
        "01": ("ReLU MLP, spiral n=40 (working set)",
               lambda cache: cal.widgets.mlp_beta_explorer(X1, y1, activation="relu", beta=0.1,
                                                           cache=cache, **quiet)),
        "02": ("linear attention n=12, s=4, d=3, c=2",
               lambda cache: cal.widgets.attention_rank_explorer(X2, Y2, beta=0.1, cache=cache,
                                                                 **quiet)),
        "03": ("gated attention n=30, s=6, 16 gates",
               lambda cache: cal.widgets.clustering_explorer(beta=100.0, n_gates=16, noise=0.1,
                                                             n=30, s=6, K=3, values=1, seed=0,
                                                             cache=cache, **quiet)),
        "04": ("3 mixing programs n=12, s=6, d=c=2",
               lambda cache: cal.widgets.mixer_beta_explorer(X4, Y4, beta=0.1, cache=cache,
                                                             **quiet)),
    }


def cvxpy_solve_ms(explorer, beta: float) -> float:
    """One CVXPY solve at ``beta`` as the explorer does it off its grid (no figure)."""
    t0 = time.perf_counter()
    if isinstance(explorer, cal.widgets.ClusteringExplorer):
        v = explorer.values()
        X, Y, _ = clustering.routing_clusters(noise=v["noise"], seed=explorer.seed, **explorer.sizes)
        cal.convex.fit_self_attention(X, Y, beta, activation="gated_relu", n_gates=v["n_gates"],
                                      seed=explorer.seed)
    else:
        explorer.solve.__wrapped__(beta)  # the un-cached solve
    return 1e3 * (time.perf_counter() - t0)


def bench(name, desc, build, moves: int) -> dict:
    t0 = time.perf_counter()
    explorer = build(False)  # (d): the path, not from the cache
    build_s = time.perf_counter() - t0
    paths = getattr(explorer, "paths", None) or {"": explorer.path}
    if isinstance(explorer, cal.widgets.ClusteringExplorer):
        paths = {"": next(iter(explorer.paths.values()))}
    # the path part of the construction: each regularisation_path call from its start to the
    # certified fits (data, head, beta_max, solves, certificates); the rest of build_s is the
    # opening figure's render (prerender=False still draws the opening position) and the widgets
    path_s = float(sum(p.wall_time for p in paths.values()))
    grid = explorer.grid
    start = float(explorer.slider.value)
    pick = np.linspace(0, len(grid) - 1, moves + 2).round().astype(int)[1:-1]
    targets = [float(grid[k]) for k in pick if not np.isclose(grid[k], start)]
    old, solves = [], []
    for b in targets:  # (a) CVXPY re-solve + render, as before
        b_off = b * OFF_GRID
        t = time.perf_counter()
        fig, _ = explorer.figure(**(explorer.values() | {"beta": b_off}))
        fig.savefig(io.BytesIO(), format="png")  # the SHA-1 of the figure, as _redraw did
        print_figure(fig, "png")  # display(fig) with the inline backend
        plt.close(fig)
        old.append(1e3 * (time.perf_counter() - t))
        solves.append(cvxpy_solve_ms(explorer, b_off))
    first, again = [], []
    for b in targets:  # (b) first visit
        explorer.slider.value = b
        first.append(explorer.draw_ms[-1])
    for b in targets:  # (c) revisit
        explorer.slider.value = b
        again.append(explorer.draw_ms[-1])
    t = time.perf_counter()  # what prerender=True adds to the construction: every position's PNG
    for b in grid:
        explorer._render(explorer.values() | {"beta": float(b)})
    render_s = time.perf_counter() - t + 1e-3 * (sum(first) - sum(again)) + (build_s - path_s)
    one_solve = float(np.median(solves))
    row = {"slider": name, "what": desc, "positions": int(len(grid)), "moves": len(targets),
           "cvxpy_ms": float(np.median(old)), "cvxpy_worst_ms": float(np.max(old)),
           "first_ms": float(np.median(first)), "first_worst_ms": float(np.max(first)),
           "revisit_ms": float(np.median(again)), "revisit_worst_ms": float(np.max(again)),
           "path_s": path_s, "build_s": build_s, "render_s": render_s, "one_solve_ms": one_solve,
           "max_rel_gap": float(max(p.rel_gaps.max() for p in paths.values())),
           "methods": ",".join(sorted({p.method for p in paths.values()}))}
    row["ratio_first"] = row["cvxpy_ms"] / row["first_ms"]
    row["ratio_revisit"] = row["cvxpy_ms"] / row["revisit_ms"]
    row["path_over_solve"] = 1e3 * path_s / one_solve
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=None, help="sliders to run (01 02 03 04)")
    p.add_argument("--moves", type=int, default=6, help="slider positions visited (default 6)")
    p.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = p.parse_args(argv)
    if args.moves < 1:
        p.error("--moves must be >= 1")
    os.environ.setdefault("CVXATTN_DATA", tempfile.mkdtemp(prefix="bench-sliders-"))
    print_machine()
    rows = []
    for name, (desc, build) in builders().items():
        if args.only and name not in args.only:
            continue
        rows.append(bench(name, desc, build, args.moves))
        r = rows[-1]
        print(f"{name} done: path {r['path_s']:.2f} s (construction {r['build_s']:.2f} s), CVXPY move "
              f"{r['cvxpy_ms']:.0f} ms", flush=True)
    print()
    head = (f"{'slider':<6} {'program':<38} {'pos':>4} {'CVXPY ms/move':>15} {'path ms (1st)':>15} "
            f"{'path ms (again)':>16} {'ratio 1st':>9} {'ratio again':>11} {'path s':>7} {'render s':>8} "
            f"{'build s':>7} {'1 solve ms':>10} {'path/solve':>10} {'max gap':>8} method")
    print(head)
    for r in rows:
        print(f"{r['slider']:<6} {r['what']:<38} {r['positions']:>4} "
              f"{r['cvxpy_ms']:>7.0f} ({r['cvxpy_worst_ms']:>5.0f}) "
              f"{r['first_ms']:>7.0f} ({r['first_worst_ms']:>5.0f}) "
              f"{r['revisit_ms']:>8.1f} ({r['revisit_worst_ms']:>5.1f}) "
              f"{r['ratio_first']:>8.1f}x {r['ratio_revisit']:>10.0f}x {r['path_s']:>7.2f} "
              f"{r['render_s']:>8.1f} {r['build_s']:>7.2f} "
              f"{r['one_solve_ms']:>10.0f} {r['path_over_solve']:>9.1f}x {r['max_rel_gap']:>8.1e} "
              f"{r['methods']}")
    print("ms per move: median (worst) over the moves; 'again' = a position whose PNG exists (every move "
          "with prerender=True, the default); ratio = CVXPY / path per move; path/solve = one-off path "
          "/ one CVXPY solve; path s = the regularisation paths' wall time; render s = the PNGs of every "
          "position (prerender's cost); build s = construction with prerender=False (paths + opening figure)")
    print(f"load    : {load_average()} (1, 5, 15 min) at the end")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
