"""``python -m cvxattn_lib.cifar extract | train | report``: the CIFAR-100 pipeline from a shell.

* ``extract``: backbone tokens of the train and test splits into the feature cache (resumable);
* ``train``: heads x betas on the cached features (extracting first if needed); writes a results
  JSON under ``<data root>/results/`` (atomically) and prints the comparison table;
* ``report``: the table of a results JSON (the newest one by default).

Examples::

    python -m cvxattn_lib.cifar extract --backbone gmlp_s16_224 --batch-size 512
    python -m cvxattn_lib.cifar train --heads linear,mlp_relu,attention_softmax --betas 1e-3,1e-2,1e-1 \\
        --epochs 20 --reduce-dim 32
    python -m cvxattn_lib.cifar report
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import numpy as np

from .backbone import DEFAULT_BACKBONE
from .cache import REDUCTIONS, atomic_write_json
from .data import SOURCE_REAL

RESULTS_FORMAT = "cvxattn-cifar100-results/1"
FAST_SIZES = {"train": 1000, "test": 500}


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not vals or any(not np.isfinite(v) or v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"betas must be positive finite numbers, got {text!r}")
    return vals


def _solver_options(pairs: list[str]) -> dict:
    """``["max_iter=2000", "dtype=float32"]`` -> ``{"max_iter": 2000, "dtype": "float32"}``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--solver-option expects KEY=VALUE, got {pair!r}")
        for cast in (int, float):
            try:
                out[key.strip()] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key.strip()] = value
    return out


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and backbone")
    g.add_argument("--data-root", type=Path, default=None,
                   help="folder with cifar-100-python/ and the cache (default: $CVXATTN_DATA or data/)")
    g.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"timm model that yields tokens (default {DEFAULT_BACKBONE}; e.g. "
                        "vit_small_patch16_224, mixer_b16_224)")
    g.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="random backbone weights (default: pretrained, falling back with a warning)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    g.add_argument("--batch-size", type=int, default=256, help="extraction and minibatch size (256)")
    g.add_argument("--chunk-size", type=int, default=None,
                   help="images written to the cache per resumable step (default 8 x batch size)")
    g.add_argument("--subset", type=int, default=None, help="use the first N training images")
    g.add_argument("--test-subset", type=int, default=None, help="use the first N test images")
    g.add_argument("--fast", action="store_true",
                   help=f"small sizes for a quick run ({FAST_SIZES['train']} train / {FAST_SIZES['test']} "
                        "test images, 2 epochs); also on when CVXATTN_FAST=1")
    g.add_argument("--seed", type=int, default=0, help="seed of the stand-in data, random weights and heads")
    g.add_argument("--no-download", dest="download", action="store_false", help="never try to download")
    g.add_argument("--no-standin", dest="standin", action="store_false",
                   help="fail instead of using the synthetic stand-in when CIFAR-100 is missing")
    g.add_argument("--manifest", type=Path, default=None,
                   help="JSON of md5s for train/test/meta (default: the official CIFAR-100 sums)")
    g.add_argument("--rebuild", action="store_true", help="extract again even if a cache exists")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the md5 check of cached features on load (size/header still checked)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cvxattn_lib.cifar", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="backbone features of train and test into the cache")
    _data_options(ex)
    tr = sub.add_parser("train", help="train heads on the cached features and write results JSON")
    _data_options(tr)
    g = tr.add_argument_group("heads")
    g.add_argument("--heads", default="available",
                   help="comma-separated heads, 'available' (default: those this library can train) or "
                        "'all'; see `report --list-heads`")
    g.add_argument("--betas", type=_floats, default=[1e-2], help="comma-separated beta grid (1e-2)")
    g.add_argument("--epochs", type=int, default=10, help="Adam epochs of the non-convex heads (10)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    g.add_argument("--width", type=int, default=512, help="hidden units of mlp_relu (512)")
    g.add_argument("--attn-heads", type=int, default=4, help="heads of attention_softmax (4)")
    g.add_argument("--method", default="fista", help="solver of the convex heads: fista | burer_monteiro")
    g.add_argument("--solver-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for cal.solvers.fit_head (repeatable), e.g. max_iter=2000, tol=1e-6, "
                        "dtype=float32, rank=32")
    g.add_argument("--reduce-dim", type=int, default=None,
                   help="reduce features to this d (see --reduce-method)")
    g.add_argument("--reduce-method", default="pca", choices=REDUCTIONS[1:], help="pca (fit on train) | pool")
    g.add_argument("--reduce-tokens", type=int, default=None, help="average-pool the tokens to this many")
    g.add_argument("--out", type=Path, default=None,
                   help="results JSON (default <data root>/results/cifar100-<backbone>-<time>.json)")
    rp = sub.add_parser("report", help="print the comparison table of a results JSON")
    rp.add_argument("results", nargs="?", type=Path, default=None,
                    help="results JSON (default: newest under <data root>/results)")
    rp.add_argument("--data-root", type=Path, default=None)
    rp.add_argument("--list-heads", action="store_true", help="list the heads and whether they are available")
    rp.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return p


def _root(args) -> Path:
    from ..runtime import data_root

    if args.data_root is None:
        return data_root()
    root = Path(args.data_root).expanduser()
    if not root.is_dir():
        raise ValueError(f"--data-root {root} is not an existing folder; create it or point to the folder "
                         "holding cifar-100-python/ (or leave it out for $CVXATTN_DATA / data/)")
    return root


def _sizes(args) -> tuple[int | None, int | None]:
    from ..runtime import is_fast

    fast = args.fast or is_fast()
    n_train = args.subset if args.subset is not None else (FAST_SIZES["train"] if fast else None)
    n_test = args.test_subset if args.test_subset is not None else (FAST_SIZES["test"] if fast else None)
    return n_train, n_test


def prepare_features(root=None, backbone: str = DEFAULT_BACKBONE, pretrained: bool = True, device=None,
                     n_train: int | None = None, n_test: int | None = None, batch_size: int = 256,
                     chunk_size: int | None = None, seed: int = 0, download: bool = True, manifest=None,
                     standin: bool = True, rebuild: bool = False, verify: bool = True,
                     progress: bool = True, verbose: bool = True) -> dict:
    """Data (or its stand-in), backbone and both feature caches (loaded if present, else extracted).

    Returns ``{"root", "backbone", "caches": {"train": FeatureCache, "test": ...}, "source", "splits"}``
    (``splits``: the images, :class:`CifarSplit` per split); the
    first ``n_train`` / ``n_test`` images are used (all when None)."""
    from ..runtime import data_root
    from .backbone import Backbone, check_name
    from .cache import extract_features
    from .data import load_cifar100

    root = Path(root) if root is not None else data_root()
    check_name(backbone)
    sizes = {"train": n_train, "test": n_test}
    splits = {}
    for split in ("train", "test"):
        data = load_cifar100(split, root, download_missing=download, manifest=manifest, standin=standin,
                             standin_size=sizes[split], seed=seed, verbose=verbose)
        splits[split] = data.subset(sizes[split])
    bb = Backbone(backbone, pretrained=pretrained, device=device, seed=seed)
    caches = {split: extract_features(bb, data, root, batch_size=batch_size, chunk_size=chunk_size,
                                      seed=seed, rebuild=rebuild, verify=verify, progress=progress)
              for split, data in splits.items()}
    if verbose:
        for split, c in caches.items():
            print(f"{split}: {len(c)} images -> {c.features.shape[1]} tokens x {c.features.shape[2]} "
                  f"features (fp16) in {c.path}")
    return {"root": root, "backbone": bb, "caches": caches, "source": splits["train"].source,
            "splits": splits}


def resolve_heads(spec) -> list[str]:
    """``'available'`` (what this library can train), ``'all'``, or a comma-separated list / list."""
    from .heads import HEADS, available_heads, check_heads

    if spec == "available":
        return available_heads()
    if spec == "all":
        return list(HEADS)
    return check_heads(spec)


def run_heads(prepared: dict, heads="available", betas=(1e-2,), device=None, epochs: int = 10,
              batch_size: int = 256, lr: float = 1e-3, seed: int = 0, reduce_dim: int | None = None,
              reduce_method: str = "pca", reduce_tokens: int | None = None, progress: bool = True,
              verbose: bool = True, **head_options) -> dict:
    """Train every head at every beta on the caches of :func:`prepare_features`; return the results
    dict (the JSON that ``train`` writes: ``data``, ``backbone``, ``reduction``, ``rows``, ...)."""
    from .cache import reduce_features
    from .heads import CONVEX_HEADS, solver_module, train_head

    heads = resolve_heads(heads)
    for h in heads:
        if h in CONVEX_HEADS:
            solver_module()  # fail now, with the message, if the convex solvers are missing
    tr, te = prepared["caches"]["train"], prepared["caches"]["test"]
    Xtr, Xte, reduction = reduce_features(tr.features, te.features, dim=reduce_dim, method=reduce_method,
                                          tokens=reduce_tokens, device=prepared["backbone"].device)
    rows = []
    for h in heads:
        for beta in betas:
            r = train_head(h, Xtr, tr.labels, Xte, te.labels, beta, device=device, epochs=epochs,
                           batch_size=batch_size, lr=lr, seed=seed, progress=progress, **head_options)
            rows.append(r.as_dict())
            if verbose:
                print(f"  {h:22s} beta={beta:<8g} top1={r.top1:.3f} top5={r.top5:.3f} "
                      f"time={r.train_time_s:.1f}s", flush=True)
    bb = prepared["backbone"]
    return {"format": RESULTS_FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "library_version": tr.meta["version"], "command": " ".join(sys.argv),
            "data": {"source": prepared["source"], "n_train": len(tr), "n_test": len(te),
                     "data_root": str(prepared["root"]), "train_cache": tr.key, "test_cache": te.key},
            "backbone": {"name": bb.name, "pretrained": bool(bb.pretrained), "transform": bb.transform,
                         "tokens": int(tr.features.shape[1]), "features": int(tr.features.shape[2])},
            "reduction": reduction, "device": rows[0]["device"] if rows else str(bb.device),
            "betas": [float(b) for b in betas], "heads": heads, "rows": rows}


def save_results(results: dict, path) -> Path:
    """Write a results dict as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, results)
    return path


def extract(args) -> dict:
    """``extract``: both caches for the options of the command line."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    n_train, n_test = _sizes(args)
    return prepare_features(_root(args), args.backbone, args.pretrained, args.device, n_train, n_test,
                            args.batch_size, args.chunk_size, args.seed, args.download, args.manifest,
                            args.standin, args.rebuild, args.verify, args.progress)


def train(args) -> Path:
    """``train``: extract (or load) features, train every head at every beta, write and print results."""
    from ..runtime import is_fast

    heads = resolve_heads(args.heads)  # unknown names fail before any work
    from .heads import CONVEX_HEADS, solver_module

    for h in heads:
        if h in CONVEX_HEADS:
            solver_module()
    solver_options = _solver_options(args.solver_option)
    fast = args.fast or is_fast()
    epochs = 2 if fast and args.epochs == 10 else args.epochs
    prepared = extract(args)
    results = run_heads(prepared, heads, args.betas, device=args.device, epochs=epochs,
                        batch_size=args.batch_size, lr=args.lr, seed=args.seed, reduce_dim=args.reduce_dim,
                        reduce_method=args.reduce_method, reduce_tokens=args.reduce_tokens,
                        progress=args.progress, width=args.width, attn_heads=args.attn_heads,
                        method=args.method, solver_options=solver_options)
    out = args.out
    if out is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
        out = prepared["root"] / "results" / f"cifar100-{results['backbone']['name']}-{stamp}.json"
    save_results(results, out)
    print(format_table(results))
    print(f"results written to {out}")
    return Path(out)


def load_results(path) -> dict:
    """A results JSON written by ``train`` (checked for its format); rows are plain dicts."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"results file {path} does not exist; run `python -m cvxattn_lib.cifar train` first")
    try:
        results = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a cvxattn CIFAR-100 results file (format {RESULTS_FORMAT!r})")
    return results


def latest_results(root=None) -> Path:
    """The newest results JSON under ``<root>/results``."""
    from ..runtime import data_root

    folder = (Path(root) if root is not None else data_root()) / "results"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise ValueError(f"no results under {folder}; run `python -m cvxattn_lib.cifar train` first")
    return files[-1]


def format_table(results: dict, markdown: bool = False) -> str:
    """The head comparison as a plain-text (or Markdown) table, one row per head and beta."""
    d, b = results["data"], results["backbone"]
    label = "CIFAR-100" if d["source"] == SOURCE_REAL else "SYNTHETIC STAND-IN (not CIFAR-100)"
    red = results.get("reduction", {})
    lines = [f"{label}: {d['n_train']} train / {d['n_test']} test images; backbone {b['name']} "
             f"({'pretrained' if b['pretrained'] else 'RANDOM weights'}), {b['tokens']} x {b['features']} "
             f"tokens -> {red.get('tokens', b['tokens'])} x {red.get('features', b['features'])} "
             f"({red.get('method', 'none')}); device {results['device']}"]
    if markdown:
        lines += ["", "| head | beta | top-1 | top-5 | params | units | time (s) | rel. gap | device |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in results["rows"]:
            gap = "n/a (non-convex)" if r["rel_gap"] is None else f"{r['rel_gap']:.1e}"
            lines.append(f"| {r['head']} | {r['beta']:.3g} | {100 * r['top1']:.1f}% | {100 * r['top5']:.1f}% "
                         f"| {r['params']} | {r.get('units') or ''} | {r['train_time_s']:.2f} | {gap} "
                         f"| {r['device']} |")
        return "\n".join(lines)
    head = f"{'head':22s} {'beta':>8s} {'top1':>6s} {'top5':>6s} {'params':>10s} {'units':>5s} " \
           f"{'time s':>8s} {'rel gap':>9s} {'device':>7s}"
    lines += [head, "-" * len(head)]
    for r in results["rows"]:
        gap = "n/a (nc)" if r["rel_gap"] is None else f"{r['rel_gap']:.1e}"
        units = "" if r.get("units") is None else str(r["units"])
        lines.append(f"{r['head']:22s} {r['beta']:8.2g} {100 * r['top1']:5.1f}% {100 * r['top5']:5.1f}% "
                     f"{r['params']:10d} {units:>5s} {r['train_time_s']:8.2f} {gap:>9s} {r['device']:>7s}")
    lines.append("rel gap: certified (objective - lower bound) / objective; n/a (nc) for non-convex heads")
    return "\n".join(lines)


def report(args) -> str:
    from .heads import CONVEX_HEADS, HEADS, available_heads

    if args.list_heads:
        avail = set(available_heads())
        text = "\n".join(f"{h:22s} {'convex' if s.convex else 'non-convex':10s} "
                         f"{'available' if h in avail else 'needs cal.solvers' if h in CONVEX_HEADS else ''}"
                         f"  {s.description}" for h, s in HEADS.items())
        print(text)
        return text
    path = args.results if args.results is not None else latest_results(_root(args))
    text = format_table(load_results(path), markdown=args.markdown)
    print(f"{path}:\n{text}")
    return text


def main(argv=None) -> int:
    """Entry point; returns the exit status (2 with a one-line message on bad input)."""
    from .cache import CacheCorruptError
    from .data import CifarDataError
    from .heads import HeadUnavailableError

    args = build_parser().parse_args(argv)
    try:
        {"extract": extract, "train": train, "report": report}[args.command](args)
    except (ValueError, CifarDataError, CacheCorruptError, HeadUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
