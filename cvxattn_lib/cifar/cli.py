"""``python -m cvxattn_lib.cifar extract | train | report``: the CIFAR-100 pipeline from a shell.

* ``extract``: backbone tokens of the train and test splits into the feature cache (resumable);
* ``train``: heads x betas on the cached features (extracting first if needed); every option is
  checked before any work starts; each (head, beta) row is written to a results JSON under
  ``<data root>/results/`` as soon as it finishes (atomically), a head that fails (out of memory,
  any error) is recorded as a failed row with its error and the grid goes on, and running the same
  command again resumes: rows already done with the same options are skipped (failed ones retried);
* ``report``: the table of a results JSON (the newest one by default), failed rows and an unfinished
  grid marked as such.

Before any work ``train`` plans (:mod:`.plan`): each head's peak host and device memory and time per
iteration; by default (``--reduce-dim auto --reduce-tokens auto --method auto``) each head gets the
largest reduction and the solver that fit; a head that would not fit is skipped (a ``skipped`` row
naming the options that make it fit) or, with ``--strict``, refused.  ``train --plan`` prints the plan
and stops (no features read).

Examples::

    python -m cvxattn_lib.cifar extract --backbone gmlp_s16_224 --batch-size 512
    python -m cvxattn_lib.cifar train --heads linear,mlp_relu,attention_softmax --betas 1e-3,1e-2,1e-1 \\
        --epochs 20 --reduce-dim 32
    # beta as a fraction of each head's beta_max (instead of --betas; the table shows both):
    python -m cvxattn_lib.cifar train --heads all --beta-fractions 0.01,0.1 --reduce-dim 32
    python -m cvxattn_lib.cifar report
    # any image folder (ImageFolder layout) through a CIFAR ResNet's layer2 (16 x 16 tokens of 32):
    python -m cvxattn_lib.cifar train --data imagefolder:data/cifar10 \
        --backbone resnet20:data/resnet20.safetensors:layer2 --heads linear,mlp_relu
    # the real set that ships with scikit-learn, through the ResNet-20 we pretrained on its own split:
    python -m cvxattn_lib.cifar train --data digits \
        --backbone resnet20:data/weights/resnet20_digits.safetensors:layer2 --heads linear,linear_flat
    python -m cvxattn_lib.cifar pretrain-digits      # remake those weights (seeded, about a minute on a CPU)

The data set's name and class count go into the cache key, the results file (its name and its
``data``) and the table; every head is built for the data set's class count.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import sys
from pathlib import Path

from .names import (AUTO, BACKBONE_HELP, DATA_CIFAR100, DATA_DIGITS, DATA_HELP,  # torch-free:
                    DEFAULT_BACKBONE, IMAGEFOLDER, REDUCTIONS, SOURCE_REAL,  # --help stays light
                    TRAIN_EPILOG, reduction_value)

RESULTS_FORMAT = "cvxattn-cifar100-results/1"
DESCRIPTION = """The CIFAR-100 pipeline from a shell (also installed as cvxattn-cifar); other image sets
(--data imagefolder:PATH) and CIFAR ResNet stages (--backbone resnet20:WEIGHTS:layer2) go through it too:
  extract  backbone tokens of the train and test splits into the feature cache (resumable)
  train    heads x betas on the cached features; writes a results JSON under <data root>/results/
           row by row, resumes a rerun, records a failing head as a failed row and goes on
  report   the table of a results JSON (the newest one by default)
  pretrain-digits  train our ResNet-20 on the pretrain split of scikit-learn's digits (--data digits):
           the backbone shipped as data/weights/resnet20_digits.safetensors"""
FAST_SIZES = {"train": 1000, "test": 500}


def _grid(what: str):
    """An argparse type: comma-separated positive finite numbers without repeats (``what`` names
    them in the message)."""

    def parse(text: str) -> list[float]:
        try:
            vals = [float(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
        if not vals or any(not math.isfinite(v) or v <= 0 for v in vals):
            raise argparse.ArgumentTypeError(f"{what} must be positive finite numbers, got {text!r}")
        if len(set(vals)) != len(vals):
            raise argparse.ArgumentTypeError(f"{what} must not repeat, got {text!r}")
        return vals

    parse.__name__ = what
    return parse


_floats = _grid("betas")
_fractions = _grid("beta fractions")


def _checked(convert, ok, expected: str):
    """An argparse type: ``convert(text)`` that satisfies ``ok``, else an error "must be
    ``expected``" (argparse adds the option's name)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    parse.__name__ = expected
    return parse


_count = _checked(int, lambda v: v >= 1, "an integer >= 1")
_positive = _checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_seed = _checked(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32 - 1]")


def _solver_options(pairs: list[str]) -> dict:
    """``["max_iter=2000", "dtype=float32", "progress=false"]`` -> ``{"max_iter": 2000, "dtype":
    "float32", "progress": False}`` (ints, then floats, then true/false, else strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--solver-option expects KEY=VALUE, got {pair!r}")
        if key in out:
            raise ValueError(f"--solver-option {key} is given twice")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            low = value.strip().lower()
            out[key] = {"true": True, "false": False}.get(low, value)
    return out


#: solver options that must be integers >= 1 (``epochs`` >= 0), numbers > 0, or in (0, 1)
_INT_OPTIONS = {"max_iter": 1, "epochs": 0, "rank": 1, "check_every": 1, "batch_size": 1, "polish_iter": 0,
                "eval_batch_size": 1, "power_iter": 1, "n_gates": 1, "block": 1, "explicit_limit": 0}
_POSITIVE_OPTIONS = ("tol", "lr", "L0", "init_scale", "power_tol")
#: what the heads set themselves when they call fit_head (given by the command line's own flags)
_SET_BY_HEADS = {"kind": "--heads", "X": None, "Y": None, "beta": "--betas", "method": "--method",
                 "device": "--device", "activation": "--heads", "seed": "--seed", "loss": None,
                 "classes": None, "beta_fraction": "--beta-fractions"}


def check_solver_options(method: str, options: dict) -> dict:
    """Check ``--method`` and every ``--solver-option`` before any work: the method is one of
    ``cal.solvers.METHODS``, each key is an option of ``fit_head`` for that method, and the values of
    the numeric ones are in range.  Raises ``ValueError`` naming the option."""
    import inspect

    from .heads import solver_module

    methods = ("fista", "burer_monteiro")
    try:
        solvers = solver_module()
        methods = tuple(getattr(solvers, "METHODS", methods))
    except Exception:  # no solvers: only the non-convex heads can run, so only the names are checked
        solvers = None
    if method == AUTO:  # each option must serve one of the methods (each head gets those of its own)
        served = set()
        for m in methods:
            mine = options_for(m, options)
            check_solver_options(m, mine)
            served |= set(mine)
        bad = [k for k in options if k not in served]
        if bad:
            valid = sorted(set().union(*((_option_names(m) or set()) for m in methods)) - set(_SET_BY_HEADS))
            raise ValueError(f"--solver-option: unknown option(s) {', '.join(map(repr, bad))} for "
                             f"--method auto (options of {' or '.join(methods)}: {', '.join(valid)})")
        return options
    if method not in methods:
        raise ValueError(f"--method must be one of {', '.join(methods + (AUTO,))}, got {method!r}")
    if not isinstance(options, dict):
        raise ValueError(f"solver options must be a dict, got {type(options).__name__}")
    for key, value in options.items():
        if key in _SET_BY_HEADS:
            flag = _SET_BY_HEADS[key]
            raise ValueError(f"--solver-option {key} is set by the heads themselves"
                             + (f"; use {flag}" if flag else ""))
        if key in _INT_OPTIONS:
            low = _INT_OPTIONS[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"--solver-option {key} must be an integer >= {low}, got {value!r}")
        elif key in _POSITIVE_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"--solver-option {key} must be a finite number > 0, got {value!r}")
        elif key == "shrink":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"--solver-option shrink must lie in (0, 1), got {value!r}")
        elif key == "dtype":
            dtypes = tuple(getattr(solvers, "DTYPES", ("float64", "float32", "bfloat16")))
            if value not in dtypes:
                raise ValueError(f"--solver-option dtype must be one of {', '.join(dtypes)}, got {value!r}")
        elif key == "progress" and not isinstance(value, bool):
            raise ValueError(f"--solver-option progress must be true or false, got {value!r}")
        elif key == "gates":
            raise ValueError("--solver-option gates cannot be given on the command line (it is an array); "
                             "use n_gates")
    if solvers is not None:
        fit_keys = set(inspect.signature(solvers.fit_head).parameters) - set(_SET_BY_HEADS) - {"options"}
        method_options = {k: v for k, v in options.items() if k not in fit_keys}
        check = getattr(getattr(solvers, "api", None), "_options", None)
        fn = getattr(solvers, method, None)
        if check is not None and fn is not None:
            try:
                check(fn, method_options, method)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"--solver-option: {exc}") from None
    return options


def _option_names(method: str) -> set | None:
    """Every option ``fit_head`` takes with ``method`` (its own and the method's solver's), or None
    when the solvers are not importable."""
    import inspect

    try:
        from .heads import solver_module

        solvers = solver_module()
        names = set(inspect.signature(getattr(solvers, method)).parameters)
        names |= set(inspect.signature(solvers.fit_head).parameters)
    except Exception:
        return None
    return (names | {"power_iter", "power_tol", "block", "explicit_limit", "dtype"}) \
        - {"head", "beta", "head64", "options", "power"}


def options_for(method: str, options: dict) -> dict:
    """The solver options that ``method`` takes (``--method auto`` passes each head those of the
    method its plan chose)."""
    names = _option_names(method)
    return dict(options) if names is None else {k: v for k, v in options.items() if k in names}


def _gigabytes(text: str) -> int:
    """``--host-memory`` / ``--device-memory`` in GB (10^9 bytes) -> bytes."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of GB > 0, got {text!r}")
    return int(value * 1e9)


def _plan_sizes(text: str) -> tuple:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 5 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"must be N_TRAIN,N_TEST,TOKENS,FEATURES,CLASSES (5 integers >= 1), "
                                         f"got {text!r}")
    return vals


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and backbone")
    g.add_argument("--data-root", type=Path, default=None,
                   help="folder with cifar-100-python/, the cache and the results (default: $CVXATTN_DATA "
                        "or data/)")
    g.add_argument("--data", default=DATA_CIFAR100, help=DATA_HELP)
    g.add_argument("--data-name", default=None,
                   help="name of an imagefolder data set in cache keys, results and tables (default: the "
                        "folder's name)")
    g.add_argument("--image-size", type=_count, default=None,
                   help="resize every image of an imagefolder data set to this square size (default: "
                        "all images must have one size)")
    g.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=BACKBONE_HELP.format(default=DEFAULT_BACKBONE))
    g.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="random backbone weights (default: pretrained, falling back with a warning)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    g.add_argument("--batch-size", type=_count, default=256, help="extraction and minibatch size (256)")
    g.add_argument("--chunk-size", type=_count, default=None,
                   help="images written to the cache per resumable step (default 8 x batch size)")
    g.add_argument("--subset", type=_count, default=None, help="use the first N training images")
    g.add_argument("--test-subset", type=_count, default=None, help="use the first N test images")
    g.add_argument("--fast", action="store_true",
                   help=f"small sizes for a quick run ({FAST_SIZES['train']} train / {FAST_SIZES['test']} "
                        "test images, 2 epochs); also on when CVXATTN_FAST=1")
    g.add_argument("--seed", type=_seed, default=0,
                   help="seed of the stand-in data, random weights and heads")
    g.add_argument("--no-download", dest="download", action="store_false", help="never try to download")
    g.add_argument("--no-standin", dest="standin", action="store_false",
                   help="fail instead of using the synthetic stand-in when CIFAR-100 is missing")
    g.add_argument("--manifest", type=Path, default=None,
                   help="JSON of md5s for train/test/meta (default: the official CIFAR-100 sums)")
    g.add_argument("--rebuild", action="store_true", help="extract again even if a cache exists")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the md5 check of cached features on load (size/header still checked)")
    g.add_argument("--threads", type=_count, default=None,
                   help="CPU threads for torch, >= 1 (default: torch's)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cvxattn_lib.cifar", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="backbone features of train and test into the cache")
    _data_options(ex)
    tr = sub.add_parser("train", help="train heads on the cached features and write results JSON",
                        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_options(tr)
    g = tr.add_argument_group("heads")
    g.add_argument("--heads", default="available",
                   help="comma-separated heads, 'available' (default: those this library can train) or "
                        "'all'; see `report --list-heads`")
    grid = g.add_mutually_exclusive_group()
    grid.add_argument("--betas", type=_floats, default=[1e-2], help="comma-separated beta grid (1e-2)")
    grid.add_argument("--beta-fractions", type=_fractions, default=None, metavar="FRACTIONS",
                      help="comma-separated grid of beta / beta_max (> 0; instead of --betas): each convex "
                           "head at that fraction of its own beta_max (the smallest beta with the zero "
                           "solution, so >= 1 gives zero); mlp_relu and attention_softmax at the beta of "
                           "mlp_gated_relu and attention_linear, the linear heads at that of the two-layer "
                           "linear net; the table shows beta and beta/beta_max")
    g.add_argument("--epochs", type=_count, default=10, help="Adam epochs of the non-convex heads (10)")
    g.add_argument("--lr", type=_positive, default=1e-3, help="Adam learning rate (1e-3)")
    g.add_argument("--width", type=_count, default=512, help="hidden units of mlp_relu (512)")
    g.add_argument("--attn-heads", type=_count, default=4, help="heads of attention_softmax (4)")
    g.add_argument("--method", default=AUTO,
                   help="solver of the convex heads: fista | burer_monteiro | auto (default: per head, FISTA "
                        "where the lifted Z fits, else Burer-Monteiro; see --plan)")
    g.add_argument("--solver-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for cal.solvers.fit_head (repeatable), e.g. max_iter=2000, tol=1e-6, "
                        "dtype=float32, rank=32")
    g.add_argument("--reduce-dim", type=reduction_value, default=AUTO,
                   help="reduce features to this d (see --reduce-method); auto (default): per head, the "
                        "largest that fits (see --plan); none: never")
    g.add_argument("--reduce-method", default="pca", choices=REDUCTIONS[1:], help="pca (fit on train) | pool")
    g.add_argument("--reduce-tokens", type=reduction_value, default=AUTO,
                   help="average-pool the tokens to this many; auto (default): per head, the most that fit; "
                        "none: never")
    g.add_argument("--out", type=Path, default=None,
                   help="results JSON (default: the newest unfinished one under <data root>/results with "
                        "the same options, else <data root>/results/cifar100-<backbone>-<time>.json); "
                        "rows are written as they finish")
    g.add_argument("--no-resume", dest="resume", action="store_false",
                   help="train every row again instead of skipping those already in the results file "
                        "(with --out: overwrite it)")
    g = tr.add_argument_group("plan (memory and time before any work)")
    g.add_argument("--plan", action="store_true",
                   help="dry run: print each head's peak host / device memory, time per iteration and the "
                        "features and solver it gets; reads no features")
    g.add_argument("--strict", action="store_true",
                   help="refuse (exit 2) when a head would not fit, instead of skipping it")
    g.add_argument("--host-memory", type=_gigabytes, default=None, metavar="GB",
                   help="host memory to plan for (default: what is available now)")
    g.add_argument("--device-memory", type=_gigabytes, default=None, metavar="GB",
                   help="GPU memory to plan for (default: the CUDA device's total; on a CPU the host's)")
    g.add_argument("--time-budget", type=_positive, default=3600.0, metavar="S",
                   help="seconds per (head, beta) that auto choices aim for, by the time model (3600)")
    g.add_argument("--flops", type=_positive, default=None,
                   help="device throughput (flop/s) for the time model (default: assumed, see --plan)")
    g.add_argument("--plan-sizes", type=_plan_sizes, default=None, metavar="N,NT,S,D,C",
                   help="sizes for --plan when the backbone's shape is not known: train and test images, "
                        "tokens, features, classes")
    pd = sub.add_parser("pretrain-digits",
                        help="train our ResNet-20 on the digits' pretrain split (the shipped backbone)")
    from .names import PRETRAIN_DEFAULTS as D

    pd.add_argument("--out", type=Path, default=None,
                    help="safetensors file to write (default: data/weights/resnet20_digits.safetensors of "
                         "this checkout)")
    pd.add_argument("--epochs", type=_count, default=D["epochs"], help=f"epochs ({D['epochs']})")
    pd.add_argument("--seed", type=_seed, default=D["seed"],
                    help=f"seed of weights, order, shifts ({D['seed']})")
    pd.add_argument("--input-size", type=_count, default=D["input_size"],
                    help=f"the 8 x 8 digits are resized to this square size ({D['input_size']}; "
                         "layer2 is then an input/2 grid)")
    pd.add_argument("--batch-size", type=_count, default=D["batch_size"],
                    help=f"minibatch ({D['batch_size']})")
    pd.add_argument("--lr", type=_positive, default=D["lr"], help=f"SGD learning rate ({D['lr']})")
    pd.add_argument("--subset", type=_count, default=None, help="use the first N pretraining images (tests)")
    pd.add_argument("--threads", type=_count, default=1,
                    help="CPU threads for torch (1: the same torch build on the same kind of CPU then gives "
                         "the same weights bit for bit)")
    pd.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
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
                     progress: bool = True, verbose: bool = True, data: str = DATA_CIFAR100,
                     data_name: str | None = None, image_size: int | None = None) -> dict:
    """Data (or its stand-in), backbone and both feature caches (loaded if present, else extracted).

    ``data``: ``'cifar100'``, ``'digits'`` (scikit-learn's digits, :mod:`~cvxattn_lib.cifar.digits`: its
    ImageFolder tree under ``root/digits/images`` is made on first use) or ``'imagefolder:PATH'``
    (:mod:`~cvxattn_lib.cifar.sources`, named
    ``data_name`` or after the folder, resized to ``image_size`` when given); ``backbone``: a timm
    name, a CIFAR ResNet spec ``ARCH[:WEIGHTS][:STAGE]`` (:mod:`~cvxattn_lib.cifar.resnet`; with
    ``pretrained=False`` its weights file is ignored and the weights are random), or a backbone
    object such as a :class:`~cvxattn_lib.cifar.grid.TokenGridBackbone` around any local module
    whose output is a feature map (used as it is: ``pretrained``, ``device`` and ``seed`` do not
    apply to it).
    Returns ``{"root", "backbone", "caches": {"train": FeatureCache, "test": ...}, "source",
    "dataset", "classes", "class_names", "splits"}`` (``splits``: the images, :class:`CifarSplit`
    per split; ``classes``: the data set's class count, which every head is built for); the first
    ``n_train`` / ``n_test`` images are used (all when None)."""
    from ..runtime import data_root
    from .backbone import Backbone
    from .cache import extract_features
    from .data import load_cifar100
    from .names import is_resnet, parse_backbone

    root = Path(root) if root is not None else data_root()
    if isinstance(backbone, str):
        check_backbone(backbone)
    else:
        missing = [a for a in ("name", "pretrained", "transform", "device", "tokens", "token_shape")
                   if not hasattr(backbone, a)]
        if missing:
            raise TypeError(f"backbone must be a name, a CIFAR ResNet spec or a backbone object with name, "
                            f"pretrained, transform, device, tokens and token_shape (e.g. a "
                            f"TokenGridBackbone); {type(backbone).__name__} lacks {', '.join(missing)}")
    kind, folder = check_data(data)
    if kind == DATA_DIGITS:  # scikit-learn's digits, written once as an ImageFolder tree under root
        from .digits import NAME, ensure_digits

        kind, folder, data_name = IMAGEFOLDER, ensure_digits(root), NAME
    sizes = {"train": n_train, "test": n_test}
    splits = {}
    for split in ("train", "test"):
        if kind == IMAGEFOLDER:
            from .sources import load_image_folder

            splits[split] = load_image_folder(folder, split, sizes[split], image_size, data_name)
            continue
        data_split = load_cifar100(split, root, download_missing=download, manifest=manifest,
                                   standin=standin, standin_size=sizes[split], seed=seed, verbose=verbose)
        splits[split] = data_split.subset(sizes[split])
    if not isinstance(backbone, str):
        bb = backbone
    elif is_resnet(backbone):
        from .resnet import ResNetBackbone

        arch, _, stage = parse_backbone(backbone)
        bb = ResNetBackbone(backbone if pretrained else f"{arch}:{stage}", device=device, seed=seed)
    else:
        bb = Backbone(backbone, pretrained=pretrained, device=device, seed=seed)
    caches = {split: extract_features(bb, data, root, batch_size=batch_size, chunk_size=chunk_size,
                                      seed=seed, rebuild=rebuild, verify=verify, progress=progress)
              for split, data in splits.items()}
    if verbose:
        for split, c in caches.items():
            print(f"{split}: {len(c)} images -> {c.features.shape[1]} tokens x {c.features.shape[2]} "
                  f"features (fp16) in {c.path}")
    train = splits["train"]
    return {"root": root, "backbone": bb, "caches": caches, "source": train.source, "dataset": train.dataset,
            "classes": train.n_classes, "class_names": list(train.class_names), "splits": splits}


def data_info(prepared: dict) -> dict:
    """What a results file says about the data: source, name, class count and names."""
    return {"source": prepared["source"], "dataset": prepared.get("dataset", DATA_CIFAR100),
            "classes": int(prepared.get("classes", 100)), "class_names": prepared.get("class_names")}


def data_label(d: dict) -> str:
    """How a table names the data of a results file's ``data``."""
    if d.get("source") == SOURCE_REAL:
        return "CIFAR-100"
    if d.get("source") == IMAGEFOLDER:
        return f"{d.get('dataset', '?')} (image folder, {d.get('classes', '?')} classes)"
    return "SYNTHETIC STAND-IN (not CIFAR-100)" if d.get("source") else "data source unknown"


def resolve_heads(spec) -> list[str]:
    """``'available'`` (what this library can train), ``'all'``, or a comma-separated list / list."""
    from .heads import HEADS, available_heads, check_heads

    if spec == "available":
        return available_heads()
    if spec == "all":
        return list(HEADS)
    return check_heads(spec)


def row_ok(row: dict) -> bool:
    """Whether a results row is a trained head (rows of older files have no ``status``: trained)."""
    return row.get("status", "ok") == "ok"


def _failed_row(head: str, beta: float | None, exc: BaseException, device: str, elapsed: float,
                beta_fraction: float | None = None) -> dict:
    from .backbone import is_oom

    kind = "out of memory" if is_oom(exc) else type(exc).__name__
    row = {"head": head, "beta": None if beta is None else float(beta), "status": "failed",
           "error_type": type(exc).__name__, "error": f"{kind}: {exc}".strip()[:2000], "device": device,
           "train_time_s": float(elapsed)}
    return row if beta_fraction is None else dict(row, beta_fraction=float(beta_fraction))


def _free_memory() -> None:
    """After a failed head: drop its tensors (the traceback is gone) and return CUDA's cache."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _differences(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    diff = [f"{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in keys if a.get(k) != b.get(k)]
    return "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "")


def run_config(heads, betas, epochs: int, batch_size: int, lr: float, seed: int, reduce_dim, reduce_method,
               reduce_tokens, head_options: dict, train_cache: str | None = None,
               test_cache: str | None = None, beta_fractions=None) -> dict:
    """What decides the rows of a results file (a rerun resumes only when this is equal): the grid
    (``betas``, or ``beta_fractions`` with ``betas`` empty), the training options, the feature
    reduction and the two caches (backbone, data, sizes)."""
    from .cache import jsonable

    config = {"heads": list(heads), "betas": [float(b) for b in betas or ()], "epochs": epochs,
              "batch_size": batch_size, "lr": float(lr), "seed": seed, "reduce_dim": reduce_dim,
              "reduce_method": reduce_method if reduce_dim is not None else None,
              "reduce_tokens": reduce_tokens, "head_options": dict(sorted(head_options.items())),
              "train_cache": train_cache, "test_cache": test_cache}
    if beta_fractions is not None:  # absent otherwise, so that older results files still resume
        config["beta_fractions"] = [float(f) for f in beta_fractions]
    return jsonable(config)


def data_sizes(prepared: dict):
    """The :class:`~.plan.Sizes` of prepared caches (their shapes; no features read)."""
    from .plan import Sizes

    tr, te = prepared["caches"]["train"], prepared["caches"]["test"]
    return Sizes(len(tr), len(te), int(tr.features.shape[1]), int(tr.features.shape[2]),
                 int(prepared.get("classes", 100)))


def make_plans(heads, sizes, device_type: str, reduce_dim="auto", reduce_tokens="auto", method: str = "auto",
               solver_options: dict | None = None, batch_size: int = 256, host_memory: int = 0,
               device_memory: int | None = None, time_budget: float = 3600.0, flops=None, width: int = 512,
               attn_heads: int = 4, epochs: int = 10) -> dict:
    """``{head: HeadPlan}`` (:mod:`.plan`) for the options of ``train``; heads without a memory model
    are left out.  ``host_memory`` and ``device_memory`` (bytes; None on a CPU, where host and device
    are one memory) are the budgets of :func:`memory_budgets`, the one place their defaults live."""
    from .plan import CONVEX, OWN, plan_head

    if host_memory <= 0:
        raise ValueError(f"host_memory must be a positive number of bytes (from memory_budgets), "
                         f"got {host_memory!r}")
    opts = dict(solver_options or {})
    kw = dict(dtype=str(opts.get("dtype", "float64")), batch_size=batch_size, rank=opts.get("rank"),
              n_gates=opts.get("n_gates"), device_type=device_type, host_memory=host_memory,
              device_memory=device_memory if device_memory is not None else host_memory, flops=flops,
              width=width, attn_heads=attn_heads, epochs=epochs, bm_epochs=int(opts.get("epochs", 300)))
    return {h: plan_head(h, sizes, reduce_dim, reduce_tokens, method, time_budget, **kw)
            for h in heads if h in CONVEX or h in OWN}


def memory_budgets(device, host_memory=None, device_memory=None) -> tuple[int, int | None]:
    """(host bytes, device bytes): the given ones, else what is available on the host now and the
    CUDA device's total memory (None on a CPU: host and device are one memory)."""
    from .plan import available_host_memory

    host = host_memory if host_memory is not None else available_host_memory()
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind != "cuda":
        return host, None
    if device_memory is not None:
        return host, device_memory
    import torch

    if not torch.cuda.is_available():
        raise ValueError("--device-memory is needed to plan for a CUDA device on a machine without one "
                         "(e.g. --device-memory 80 for an 80 GB GPU)")
    return host, int(torch.cuda.get_device_properties(torch.device(device)).total_memory)


def _skipped_row(head: str, beta: float | None, plan, device: str,
                 beta_fraction: float | None = None) -> dict:
    from .plan import gb

    where = ([] if plan.fits_host else [f"host: needs {gb(plan.host_bytes)} of {gb(plan.host_memory)}"]) + \
        ([] if plan.fits_device else [f"device: needs {gb(plan.device_bytes)} of {gb(plan.device_memory)}"])
    row = {"head": head, "beta": None if beta is None else float(beta), "status": "skipped", "device": device,
           "train_time_s": 0.0,
           "error": f"would not fit ({'; '.join(where)}) on {plan.tokens} tokens x {plan.features} "
                    f"features with {plan.method}; what makes it fit: {plan.advice}",
           "plan": plan_summary(plan)}
    return row if beta_fraction is None else dict(row, beta_fraction=float(beta_fraction))


def plan_summary(plan) -> dict:
    """What a results row records of its head's plan."""
    return {"method": plan.method, "tokens": plan.tokens, "features": plan.features,
            "host_bytes": plan.host_bytes, "device_bytes": plan.device_bytes,
            "seconds_per_iter": plan.seconds_per_iter, "iter_unit": plan.iter_unit, "fits": plan.fits}


def refuse_unfit(plans: dict) -> None:
    """``--strict``: a ``ValueError`` naming every head that would not fit and the options that
    make it fit."""
    from .plan import gb

    bad = [p for p in plans.values() if not p.fits]
    if bad:
        lines = [f"{p.head}: needs {gb(p.host_bytes)} host / {gb(p.device_bytes)} device (of "
                 f"{gb(p.host_memory)} / {gb(p.device_memory)}) on {p.tokens} x {p.features} with "
                 f"{p.method}; what makes it fit: {p.advice}" for p in bad]
        raise ValueError("--strict: refusing to start, " + f"{len(bad)} head(s) would not fit:\n  "
                         + "\n  ".join(lines))


def run_heads(prepared: dict, heads="available", betas=None, device=None, epochs: int = 10,
              batch_size: int = 256, lr: float = 1e-3, seed: int = 0, reduce_dim=None,
              reduce_method: str = "pca", reduce_tokens=None, progress: bool = True,
              verbose: bool = True, out=None, resume: bool = True, beta_fractions=None,
              strict: bool = False, host_memory: int | None = None, device_memory: int | None = None,
              time_budget: float = 3600.0, flops: float | None = None, **head_options) -> dict:
    """Train every head at every beta on the caches of :func:`prepare_features`; return the results
    dict (the JSON that ``train`` writes: ``data``, ``backbone``, ``reduction``, ``config``,
    ``rows``, ``complete``, ``failed``, ...).

    The grid is ``betas`` (absolute; default ``(1e-2,)``) or ``beta_fractions`` (beta / beta_max
    per head, :func:`~.heads.train_head`; the results then hold ``beta_fractions`` and rows are
    keyed by their fraction), not both.

    With ``out`` (a path) each (head, beta) row is written to that JSON as soon as it finishes
    (atomically: a temporary file in the same folder, then ``os.replace``), so a crash keeps every row
    done before it.  With ``resume`` and an existing ``out`` whose ``config`` equals this run's, the
    rows it already holds are kept and not trained again (failed rows are retried); another config is
    a ``ValueError``.  A head that raises (out of memory, or any other error) becomes a row with
    ``status: "failed"`` and its ``error``, and the grid goes on.

    Before any work, each head's plan (:mod:`.plan`; memory against ``host_memory`` /
    ``device_memory`` bytes, defaults as :func:`memory_budgets`): ``reduce_dim`` /
    ``reduce_tokens`` ``'auto'`` and ``method='auto'`` are chosen per head there (None or ``'none'``:
    no reduction); a head that would not fit becomes ``status: "skipped"`` rows naming what makes it
    fit, or, with ``strict``, nothing runs (``ValueError``)."""
    from .cache import reduce_features
    from .heads import CONVEX_HEADS, solver_module, train_head

    heads = resolve_heads(heads)
    if betas is not None and beta_fractions is not None:
        raise ValueError("give betas or beta_fractions, not both (--betas and --beta-fractions exclude "
                         "each other)")
    fractions = None
    if beta_fractions is not None:
        from ..validation import positive_scalar

        fractions = [positive_scalar("beta_fractions", f) for f in beta_fractions]
        if not fractions or len(set(fractions)) != len(fractions):
            raise ValueError(f"beta_fractions must be a non-empty grid without repeats, got "
                             f"{beta_fractions!r}")
    betas = [] if fractions is not None else [float(b) for b in (betas if betas is not None else (1e-2,))]
    grid, by = (fractions, "beta_fraction") if fractions is not None else (betas, "beta")
    for h in heads:
        if h in CONVEX_HEADS:
            solver_module()  # fail now, with the message, if the convex solvers are missing
    if "solver_options" in head_options or "method" in head_options:
        check_solver_options(head_options.get("method", "fista"), head_options.get("solver_options", {}))
    tr, te = prepared["caches"]["train"], prepared["caches"]["test"]
    from ..runtime import device as pick_device

    dev = pick_device(device if device is not None else prepared["backbone"].device)
    host_mem, dev_mem = memory_budgets(dev, host_memory, device_memory)
    sizes = data_sizes(prepared)
    plans = make_plans(heads, sizes, dev.type, "none" if reduce_dim is None else reduce_dim,
                       "none" if reduce_tokens is None else reduce_tokens,
                       head_options.get("method", "fista"),
                       head_options.get("solver_options"), batch_size, host_mem, dev_mem, time_budget, flops,
                       head_options.get("width", 512), head_options.get("attn_heads", 4), epochs)
    if strict:
        refuse_unfit(plans)
    config = run_config(heads, betas, epochs, batch_size, lr, seed, reduce_dim, reduce_method, reduce_tokens,
                        head_options, tr.key, te.key, beta_fractions=fractions)
    out = None if out is None else Path(out)
    previous, old = {}, None
    if out is not None and resume and out.exists():
        old = load_results(out)
        if old.get("config") != config:
            diff = _differences(old.get("config") or {}, config)
            raise ValueError(f"{out} holds results of other options ({diff}); pass another --out, or "
                             "--no-resume to overwrite it")
        previous = {(r["head"], float(r[by])): r for r in old["rows"] if row_ok(r) and r.get(by) is not None}
        failed = sum(not row_ok(r) for r in old["rows"])
        if verbose:
            retry = f"; {failed} failed row(s) retried" if failed else ""
            print(f"resuming {out}: {len(previous)} of {len(heads) * len(grid)} (head, beta) rows already "
                  f"done with the same options (skipped){retry}", flush=True)
    todo = [(h, g) for h in heads for g in grid if (h, g) not in previous]

    def given(value):
        return None if value in (None, "none", AUTO) else int(value)

    def reduction_of(h):  # (tokens, dim) to ask reduce_features for: the plan's, else as given
        p = plans.get(h)
        if p is not None:
            return p.reduce_tokens, p.reduce_dim
        return given(reduce_tokens), given(reduce_dim)

    groups = sorted({reduction_of(h) for h in heads if h not in plans or plans[h].fits},
                    key=lambda td: (td[0] is not None, td[1] is not None, td))
    if len(groups) <= 1:
        t0, d0 = groups[0] if groups else (None, None)
        reduction = old.get("reduction", {}) if (old is not None and not todo) else \
            {"tokens": t0 or sizes.tokens, "features": d0 or sizes.features,
             "method": "+".join(m for m, v in (("pool-tokens", t0), (reduce_method, d0)) if v) or "none"}
    else:
        reduction = {"tokens": sizes.tokens, "features": sizes.features,
                     "method": "per head (auto; each row's tokens and features)"}
    bb = prepared["backbone"]
    results = {"format": RESULTS_FORMAT,
               "created": (old or {}).get("created", _dt.datetime.now(_dt.timezone.utc).isoformat()),
               "library_version": tr.meta["version"], "command": " ".join(sys.argv),
               "data": {**data_info(prepared), "n_train": len(tr), "n_test": len(te),
                        "data_root": str(prepared["root"]), "train_cache": tr.key, "test_cache": te.key},
               "backbone": {"name": bb.name, "pretrained": bool(bb.pretrained), "transform": bb.transform,
                            "tokens": int(tr.features.shape[1]), "features": int(tr.features.shape[2])},
               "reduction": reduction, "device": str(bb.device), "betas": betas, "heads": heads,
               "config": config, "rows": [], "complete": False, "failed": 0}
    if fractions is not None:
        results["beta_fractions"] = fractions
    done = dict(previous)

    def record() -> None:
        rows = [done[(h, g)] for h in heads for g in grid if (h, g) in done]
        ok = [r for r in rows if row_ok(r)]
        skipped = sum(r.get("status") == "skipped" for r in rows)
        results.update(rows=rows, failed=len(rows) - len(ok) - skipped, skipped=skipped,
                       complete=len(rows) == len(heads) * len(grid),
                       device=ok[0]["device"] if ok else str(bb.device),
                       updated=_dt.datetime.now(_dt.timezone.utc).isoformat())
        if out is not None:
            save_results(results, out)

    record()
    def at_text(g, row) -> str:
        return f"beta={g:<8g}" if fractions is None else f"beta/beta_max={g:<6g} beta={_beta(row, '<8.3g')}"

    for h, g in todo:  # heads that would not fit: skipped rows, naming what makes them fit
        if h in plans and not plans[h].fits:
            beta, frac = (None, g) if fractions is not None else (g, None)
            done[(h, g)] = _skipped_row(h, beta, plans[h], str(dev), beta_fraction=frac)
            record()
            if verbose:
                print(f"  {h:22s} {at_text(g, done[(h, g)])} SKIPPED ({done[(h, g)]['error']})", flush=True)
    for group in groups:  # one reduction at a time (its features freed before the next)
        rows = [(h, g) for h, g in todo if reduction_of(h) == group and (h not in plans or plans[h].fits)]
        if not rows:
            continue
        t_red, d_red = group
        Xtr, Xte, info = reduce_features(tr.features, te.features, dim=d_red, method=reduce_method,
                                         tokens=t_red, device=prepared["backbone"].device)
        if len(groups) == 1:
            results["reduction"] = info
        for h, g in rows:
            beta, frac = (None, g) if fractions is not None else (g, None)
            opts = dict(head_options)
            if h in plans:
                if plans[h].method in ("fista", "burer_monteiro"):
                    opts["method"] = plans[h].method
                    opts["solver_options"] = options_for(plans[h].method, opts.get("solver_options", {}))
                elif opts.get("method") == AUTO:
                    opts["method"] = "fista"  # not used by this head
            elif opts.get("method") == AUTO:
                opts["method"] = "fista"
            t0 = _dt.datetime.now()
            try:
                r = train_head(h, Xtr, tr.labels, Xte, te.labels, beta, device=device, epochs=epochs,
                               batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                               classes=int(prepared.get("classes", 100)), beta_fraction=frac, **opts)
                row = dict(r.as_dict(), status="ok", reduction=info)
                if h in plans:
                    row["plan"] = plan_summary(plans[h])
            except Exception as exc:  # out of memory or any failure of this head: record it, go on
                row = _failed_row(h, beta, exc, str(device or bb.device),
                                  (_dt.datetime.now() - t0).total_seconds(), beta_fraction=frac)
            if not row_ok(row):
                _free_memory()
            done[(h, g)] = row
            record()
            if verbose:
                if row_ok(row):
                    print(f"  {h:22s} {at_text(g, row)} top1={row['top1']:.3f} top5={row['top5']:.3f} "
                          f"time={row['train_time_s']:.1f}s", flush=True)
                else:
                    print(f"  {h:22s} {at_text(g, row)} FAILED ({row['error']}); going on", flush=True)
        del Xtr, Xte
        gc.collect()
    return results


def save_results(results: dict, path) -> Path:
    """Write a results dict as JSON, atomically (a unique temporary file in the same folder, then
    ``os.replace``); non-finite numbers are written as strings, never as invalid JSON."""
    from .cache import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, results)
    return path


def check_backbone(spec: str) -> str:
    """``spec`` if it names a timm model or a CIFAR ResNet whose weights file exists (else a
    ``ValueError`` naming ``--backbone``)."""
    from .backbone import check_name
    from .names import is_resnet, parse_backbone

    if is_resnet(spec):
        _, weights, _ = parse_backbone(spec)
        if weights is not None and not Path(weights).expanduser().is_file():
            raise ValueError(f"--backbone {spec}: the weights file {weights} does not exist")
        return spec
    return check_name(spec)


def check_data(spec: str) -> tuple[str, Path | None]:
    """``(kind, folder)`` of a ``--data`` spec; an image folder must exist."""
    from .names import parse_data

    kind, path = parse_data(spec)
    if kind == IMAGEFOLDER:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise ValueError(f"--data {spec}: {path} is not an existing folder")
    return kind, path


def _check_args(args) -> None:
    """Everything about the options that can be checked before any work (no data, no backbone)."""
    from ..runtime import device as pick_device
    from .data import load_manifest

    pick_device(args.device)  # ValueError naming the device
    check_backbone(args.backbone)
    kind, _ = check_data(args.data)
    if kind == IMAGEFOLDER:
        from .sources import dataset_name

        dataset_name(check_data(args.data)[1], args.data_name)
        if args.manifest is not None:
            raise ValueError("--manifest (md5s of CIFAR-100's files) is for --data cifar100; an image "
                             "folder's images are hashed into its cache key instead")
    elif kind == DATA_DIGITS:
        if args.data_name is not None:
            raise ValueError("--data-name is for --data imagefolder:PATH; --data digits is named 'digits'")
        if args.manifest is not None:
            raise ValueError("--manifest (md5s of CIFAR-100's files) is for --data cifar100; the digits "
                             "tree is checked against its own sha256")
    elif args.data_name is not None or args.image_size is not None:
        raise ValueError("--data-name and --image-size are for --data imagefolder:PATH (--image-size also "
                         "for --data digits)")
    if args.manifest is not None:
        load_manifest(args.manifest)  # read even when the data turn out to be missing: never ignored
    _root(args)


def extract(args) -> dict:
    """``extract``: both caches for the options of the command line."""
    import torch

    _check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    n_train, n_test = _sizes(args)
    return prepare_features(_root(args), args.backbone, args.pretrained, args.device, n_train, n_test,
                            args.batch_size, args.chunk_size, args.seed, args.download, args.manifest,
                            args.standin, args.rebuild, args.verify, args.progress, data=args.data,
                            data_name=args.data_name, image_size=args.image_size)


def _resumable(folder: Path, config: dict) -> Path | None:
    """The newest unfinished results file in ``folder`` written with ``config``, or None."""
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            res = load_results(path)
        except ValueError:
            continue
        if res.get("config") == config and (not res.get("complete", True) or res.get("failed")):
            found.append(path)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def plan_sizes(args):
    """The :class:`~.plan.Sizes` of a ``train`` command without reading any features: ``--plan-sizes``,
    else the data set's known sizes (CIFAR-100: 50,000 / 10,000 images, 100 classes; an image folder:
    its files counted) capped by ``--subset`` / ``--test-subset`` / ``--fast``, and the backbone's
    known token grid (:data:`~.names.KNOWN_SHAPES`, CIFAR ResNet stages)."""
    from .names import DATA_SIZES, KNOWN_SHAPES, RESNET_SHAPES, is_resnet, parse_backbone
    from .plan import Sizes

    if args.plan_sizes is not None:
        return Sizes(*args.plan_sizes)
    kind, folder = check_data(args.data)
    if kind == IMAGEFOLDER:  # the files train would read, counted as the data source lists them
        from .sources import scan

        names, train_items = scan(folder, "train")
        n_all, nt_all, classes = len(train_items), len(scan(folder, "test")[1]), len(names)
    elif kind == DATA_DIGITS:  # the fixed split of scikit-learn's digits (no tree needed)
        from .digits import source_arrays, split_indices

        labels = source_arrays()[1]
        split = split_indices(labels)
        n_all, nt_all, classes = len(split["train"]), len(split["test"]), len(set(labels.tolist()))
    else:
        n_all, nt_all, classes = DATA_SIZES[DATA_CIFAR100]
    n_train, n_test = _sizes(args)
    n = min(n_all, n_train or n_all)
    nt = min(nt_all, n_test or nt_all)
    if is_resnet(args.backbone):
        _, _, stage = parse_backbone(args.backbone)
        side, feats = RESNET_SHAPES[stage]
        side = side * (args.image_size or 32) // 32
        shape = (side * side, feats)
    elif args.backbone in KNOWN_SHAPES:
        shape = KNOWN_SHAPES[args.backbone]
    else:
        raise ValueError(f"--plan does not know the token grid of --backbone {args.backbone}; give "
                         "--plan-sizes N_TRAIN,N_TEST,TOKENS,FEATURES,CLASSES")
    if min(n, nt, classes) < 1:
        raise ValueError(f"--data {args.data}: no images found to plan for (train {n}, test {nt}, "
                         f"{classes} classes)")
    return Sizes(n, nt, shape[0], shape[1], classes)


def plan_table(args, heads, solver_options: dict, epochs: int) -> tuple[str, dict]:
    """``train --plan``: the table of :func:`~.plan.format_plan` for the options of the command line,
    and the plans ``{head: HeadPlan}``."""
    from .plan import format_plan

    sizes = plan_sizes(args)
    if args.device is not None and str(args.device).startswith("cuda"):
        device = str(args.device)  # a plan for a GPU may be made on a machine without one
    else:
        from ..runtime import device as pick_device

        device = str(pick_device(args.device))
    host, dev_mem = memory_budgets(device, args.host_memory, args.device_memory)
    plans = make_plans(heads, sizes, device.split(":")[0], args.reduce_dim, args.reduce_tokens, args.method,
                       solver_options, args.batch_size, host, dev_mem, args.time_budget, args.flops,
                       args.width, args.attn_heads, epochs)
    missing = [h for h in heads if h not in plans]
    text = format_plan(list(plans.values()), sizes, device.split(":")[0],
                       str(solver_options.get("dtype", "float64")), args.flops, args.time_budget)
    if missing:
        text += f"\nno memory model for: {', '.join(missing)} (they run unchecked)"
    return text, plans


def train(args) -> Path | None:
    """``train``: check every option, extract (or load) features, train every head at every beta
    (each row written as it finishes; a rerun resumes), print the table; returns the results path."""
    from ..runtime import is_fast

    heads = resolve_heads(args.heads)  # unknown names fail before any work
    from .heads import CONVEX_HEADS, solver_module

    for h in heads:
        if h in CONVEX_HEADS:
            solver_module()
    solver_options = check_solver_options(args.method, _solver_options(args.solver_option))
    fast = args.fast or is_fast()
    epochs = 2 if fast and args.epochs == 10 else args.epochs
    if args.plan:  # a dry run: sizes from the options, no features read, nothing trained
        text, plans = plan_table(args, heads, solver_options, epochs)
        print(text)
        if args.strict:
            refuse_unfit(plans)
        return None
    _check_args(args)
    if args.out is not None:
        out = Path(args.out).expanduser()
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name for the results JSON")
    head_options = {"width": args.width, "attn_heads": args.attn_heads, "method": args.method,
                    "solver_options": solver_options}
    fractions = getattr(args, "beta_fractions", None)
    betas = [] if fractions is not None else args.betas  # one grid: absolute betas or fractions
    if args.out is not None and out.exists():
        old = load_results(out, what="--out")  # refuse to overwrite anything that is not a results file
        if args.resume:  # the options known now must match (the caches are compared after extraction)
            now = run_config(heads, betas, epochs, args.batch_size, args.lr, args.seed, args.reduce_dim,
                             args.reduce_method, args.reduce_tokens, head_options, beta_fractions=fractions)
            then = dict(old.get("config") or {}, train_cache=None, test_cache=None)
            if then != now:
                raise ValueError(f"--out {out} holds results of other options ({_differences(then, now)}); "
                                 "pass another --out, or --no-resume to overwrite it")
    prepared = extract(args)
    out = args.out
    if out is None:
        config = run_config(heads, betas, epochs, args.batch_size, args.lr, args.seed, args.reduce_dim,
                            args.reduce_method, args.reduce_tokens, head_options,
                            prepared["caches"]["train"].key, prepared["caches"]["test"].key,
                            beta_fractions=fractions)
        out = _resumable(prepared["root"] / "results", config) if args.resume else None
    if out is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
        name = f"{prepared.get('dataset', DATA_CIFAR100)}-{prepared['backbone'].name}-{stamp}.json"
        out = prepared["root"] / "results" / name
    results = run_heads(prepared, heads, betas or None, beta_fractions=fractions, device=args.device,
                        epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        reduce_dim=args.reduce_dim, reduce_method=args.reduce_method,
                        reduce_tokens=args.reduce_tokens, progress=args.progress, out=out,
                        resume=args.resume, strict=args.strict, host_memory=args.host_memory,
                        device_memory=args.device_memory, time_budget=args.time_budget, flops=args.flops,
                        **head_options)
    print(format_table(results))
    print(f"results written to {out}")
    return Path(out)


def check_results(results, what: str = "results") -> dict:
    """``results`` if it has the shape of a results dict (a dict whose ``rows`` is a list of dicts
    each with a ``head`` and a numeric ``beta``), else a ``ValueError`` naming ``what``."""
    if not isinstance(results, dict):
        raise ValueError(f"{what} must be a results dict, got {type(results).__name__}")
    rows = results.get("rows")
    if not isinstance(rows, list):
        raise ValueError(f"{what} has no list of rows (got {type(rows).__name__} under 'rows')")
    def number(v):
        return not isinstance(v, bool) and isinstance(v, (int, float))

    for i, r in enumerate(rows):  # a failed row of a beta-fraction grid has no absolute beta
        if not isinstance(r, dict) or not isinstance(r.get("head"), str) \
                or not (number(r.get("beta")) or (r.get("beta") is None and number(r.get("beta_fraction")))):
            raise ValueError(f"{what}: row {i} is not a results row with a head name and a beta, "
                             f"got {r!r:.200}")
    return results


def grid_values(results: dict) -> list[float]:
    """The grid of a results dict: its ``beta_fractions`` (beta as a fraction of beta_max) when it
    has them, else its absolute ``betas``."""
    return list(results.get("beta_fractions") or results.get("betas") or [])


def _beta(row: dict, spec: str) -> str:
    return "?" if row.get("beta") is None else format(row["beta"], spec)


def _fraction(row: dict, spec: str) -> str:
    """beta / beta_max of a row given as a fraction; blank for an absolute beta."""
    f = row.get("beta_fraction")
    return "" if f is None else format(f, spec)


def load_results(path, what: str | None = None) -> dict:
    """A results JSON written by ``train`` (checked for its format and the shape of its rows); rows
    are plain dicts.  Errors name the file."""
    path = Path(path)
    what = f"{what} {path}" if what else str(path)
    if not path.is_file():
        raise ValueError(f"results file {path} does not exist; run `python -m cvxattn_lib.cifar train` first")
    try:
        results = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{what} is not a cvxattn CIFAR-100 results file (format {RESULTS_FORMAT!r})")
    return check_results(results, what)


def latest_results(root=None) -> Path:
    """The newest results JSON under ``<root>/results``."""
    from ..runtime import data_root

    folder = (Path(root) if root is not None else data_root()) / "results"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise ValueError(f"no results under {folder}; run `python -m cvxattn_lib.cifar train` first")
    return files[-1]


def _num(value, spec: str, scale: float = 1.0, missing: str = "?") -> str:
    """A number formatted with ``spec`` (times ``scale``); anything else (None, "nan") as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return missing if value is None else str(value)
    return format(value if scale == 1 else value * scale, spec)


def _readout_label(row: dict) -> dict:
    """The row with ``@readout`` after its head name (``mixer@token``) when it was trained with a
    readout other than the mean (``train_head(..., readout=...)``)."""
    readout = (row.get("options") or {}).get("readout", "mean")
    return row if readout == "mean" else dict(row, head=f"{row['head']}@{readout}")


def format_table(results: dict, markdown: bool = False) -> str:
    """The head comparison as a plain-text (or Markdown) table, one row per head and beta.

    Failed rows show ``FAILED`` and their error; results whose grid is not finished (an interrupted
    or running ``train``) say how many rows are done.  Missing fields print as ``?``; a ``results``
    that is not a results dict is a ``ValueError``."""
    check_results(results)
    d, b = results.get("data") or {}, results.get("backbone") or {}
    label = data_label(d)
    red = results.get("reduction") or {}
    pre = b.get("pretrained")
    weights = "pretrained" if pre else ("RANDOM weights" if pre is not None else "weights unknown")
    tokens, feats = b.get("tokens", "?"), b.get("features", "?")
    lines = [f"{label}: {d.get('n_train', '?')} train / {d.get('n_test', '?')} test images; backbone "
             f"{b.get('name', '?')} ({weights}), {tokens} x {feats} tokens -> {red.get('tokens', tokens)} x "
             f"{red.get('features', feats)} ({red.get('method', 'none')}); "
             f"device {results.get('device', '?')}"]
    rows = results["rows"]
    failed = [r for r in rows if not row_ok(r) and r.get("status") != "skipped"]
    skipped = [r for r in rows if r.get("status") == "skipped"]
    n_grid = len(results.get("heads") or []) * len(grid_values(results))
    partial = results.get("complete") is False or (n_grid and len(rows) < n_grid)
    notes = []
    if partial:
        notes.append(f"PARTIAL RESULTS: {len(rows)} of {n_grid or '?'} (head, beta) rows done (an "
                     "interrupted or running `train`); rerun the same command to resume")
    if failed:
        notes.append(f"{len(failed)} row(s) FAILED (error shown); rerun the same command to retry them")
    if skipped:
        notes.append(f"{len(skipped)} row(s) SKIPPED before any work: the plan says they would not fit "
                     "(what makes them fit is shown; see train --plan)")
    own = sorted({(r["head"], r.get("tokens"), r.get("features"), (r.get("plan") or {}).get("method"))
                  for r in rows if row_ok(r) and (r.get("tokens"), r.get("features"))
                  != (red.get("tokens", tokens), red.get("features", feats))})
    if own:
        notes.append("features per head (auto): " + "; ".join(
            f"{h} {t} x {f}" + (f" ({m})" if m in ("fista", "burer_monteiro") else "") for h, t, f, m in own))
    fewer = sorted({r["head"] for r in rows if row_ok(r) and d.get("classes") is not None
                    and r.get("classes") is not None and r["classes"] < d["classes"]})
    if fewer:  # only in files of older versions: every head now takes the data set's class count
        notes.append(f"{', '.join(fewer)}: built for fewer than the data set's {d['classes']} classes (an "
                     "older version's solver counted the classes in the training labels; classes absent "
                     "there are never predicted)")
    borrowed = {}
    for r in rows:
        if r.get("beta_fraction") is not None and r.get("beta_max_of") not in (None, r["head"]):
            borrowed.setdefault(r["beta_max_of"], set()).add(r["head"])
    show_f = any(r.get("beta_fraction") is not None for r in rows)  # a beta/beta_max column
    if show_f:
        other = "".join(f"; {', '.join(sorted(hs))}: beta_max of {of}" for of, hs in sorted(borrowed.items()))
        why = " (their squared-norm penalty has no beta_max of its own: they are not zero at >= 1)"
        notes.append("b/bmax: beta / beta_max; a convex head's own beta_max is the smallest beta with the "
                     "zero solution (>= 1: zero)" + other + (why if other else ""))
    if rows and not any(r.get("head") == "linear_flat" for r in rows):
        notes.append("no linear_flat row: without the flattened-token baseline a token head's gain over "
                     "linear may come from token positions alone (run --heads ...,linear_flat)")
    if markdown:
        lines += ["", "| head | beta | " + ("beta/beta_max | " if show_f else "") + "top-1 | top-5 | params "
                  "| units | time (s) | rel. gap | device |",
                  "|---|---:|" + ("---:|" if show_f else "") + "---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            r = _readout_label(r)
            at = _beta(r, ".3g") + (f" | {_fraction(r, '.3g')}" if show_f else "")
            if not row_ok(r):
                err = str(r.get("error", "unknown error")).replace("|", "\\|").replace("\n", " ")
                word = "SKIPPED" if r.get("status") == "skipped" else "FAILED"
                lines.append(f"| {r['head']} | {at} | {word}: {err} | | | | "
                             f"{_num(r.get('train_time_s'), '.2f')} | | {r.get('device', '?')} |")
                continue
            gap = "n/a (non-convex)" if r.get("rel_gap", None) is None and not r.get("convex") \
                else _num(r.get("rel_gap"), ".1e")
            lines.append(f"| {r['head']} | {at} | {_num(r.get('top1'), '.1f', 100)}% "
                         f"| {_num(r.get('top5'), '.1f', 100)}% | {_num(r.get('params'), 'd')} "
                         f"| {r.get('units') if r.get('units') is not None else ''} "
                         f"| {_num(r.get('train_time_s'), '.2f')} | {gap} | {r.get('device', '?')} |")
        if notes:
            lines += [""] + [f"**{n}**" for n in notes]
        return "\n".join(lines)
    head = f"{'head':22s} {'beta':>8s} " + (f"{'b/bmax':>7s} " if show_f else "") + \
        f"{'top1':>6s} {'top5':>6s} {'params':>10s} {'units':>5s} {'time s':>8s} {'rel gap':>9s} " \
        f"{'device':>7s}"
    lines += [head, "-" * len(head)]
    for r in rows:
        r = _readout_label(r)
        at = f"{_beta(r, '8.2g'):>8s}" + (f" {_fraction(r, '7.3g'):>7s}" if show_f else "")
        if not row_ok(r):
            err = str(r.get("error", "unknown error")).replace("\n", " ")
            word = "SKIPPED" if r.get("status") == "skipped" else "FAILED"
            lines.append(f"{r['head']:22s} {at} {word}: {err}")
            continue
        nc = r.get("rel_gap") is None and not r.get("convex")
        gap = "n/a (nc)" if nc else _num(r.get("rel_gap"), ".1e")
        units = "" if r.get("units") is None else str(r["units"])
        lines.append(f"{r['head']:22s} {at} {_num(r.get('top1'), '5.1f', 100)}% "
                     f"{_num(r.get('top5'), '5.1f', 100)}% {_num(r.get('params'), '10d'):>10s} {units:>5s} "
                     f"{_num(r.get('train_time_s'), '8.2f'):>8s} {gap:>9s} {str(r.get('device', '?')):>7s}")
    lines.append("rel gap: certified (objective - lower bound) / objective; n/a (nc) for non-convex heads")
    lines += notes
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


def pretrain_digits(args) -> dict:
    """``pretrain-digits``: :func:`cvxattn_lib.cifar.pretrain.pretrain_digits` with the options given."""
    import torch

    from .pretrain import WEIGHTS_FILE, pretrain_digits as run, repo_weights_dir

    torch.set_num_threads(args.threads)
    out = args.out if args.out is not None else repo_weights_dir() / WEIGHTS_FILE
    if Path(out).is_dir():
        raise ValueError(f"--out {out} is a folder; give the .safetensors file to write")
    if Path(out).suffix != ".safetensors":
        raise ValueError(f"--out {out} must end in .safetensors")
    return run(out, input_size=args.input_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
               seed=args.seed, n=args.subset, progress=args.progress)


def main(argv=None) -> int:
    """Entry point; returns the exit status: 0 done, 1 done but some rows failed (they are in the
    results file), 2 with a one-line message on bad input (argparse's own errors included)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2): argparse printed the message
        return int(exc.code or 0)
    from .cache import CacheCorruptError, CacheLockedError  # after parsing: --help loads no torch
    from .data import CifarDataError
    from .heads import HeadUnavailableError

    try:
        if args.command == "train":
            out = train(args)
            return 0 if out is None else (1 if load_results(out).get("failed") else 0)
        {"extract": extract, "report": report, "pretrain-digits": pretrain_digits}[args.command](args)
    except (ValueError, CifarDataError, CacheCorruptError, CacheLockedError, HeadUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
