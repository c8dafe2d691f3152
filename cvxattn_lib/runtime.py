"""Runtime set-up shared by every notebook: seeds, fast mode, device, data root, plot style.

A notebook's one setup cell is ``cfg = cal.setup(seed=0)``.  Sizes that should shrink in the
test suite go through :func:`pick`, so the tests run every cell the reader sees, only smaller.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .validation import seed_value

FAST_ENV = "CVXATTN_FAST"
DATA_ENV = "CVXATTN_DATA"
DEVICE_ENV = "CVXATTN_DEVICE"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def is_fast() -> bool:
    """True when ``CVXATTN_FAST`` is set to a true value (1, true, yes)."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, fast):
    """Return ``fast`` in fast mode (tests, quick previews) and ``full`` otherwise."""
    return fast if is_fast() else full


def data_root() -> Path:
    """The data and cache root: ``$CVXATTN_DATA`` if set, else ``data/`` in the repository when the
    library runs from a source checkout (``pip install -e .``), else ``$XDG_DATA_HOME/cvxattn``
    (``~/.local/share/cvxattn``): never a folder inside site-packages.  Created if missing; a root
    that is a file, or that cannot be created, is a ``ValueError`` naming it."""
    env = os.environ.get(DATA_ENV)
    checkout = (_REPO_ROOT / "pyproject.toml").is_file() and not {"site-packages", "dist-packages"} \
        & set(_REPO_ROOT.parts)
    user = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "cvxattn"
    root = Path(env).expanduser() if env else (_REPO_ROOT / "data" if checkout else user)
    where = f"{DATA_ENV}={env!r}" if env else f"the default data root {root}"
    if root.exists() and not root.is_dir():
        raise ValueError(f"{where} is a file, not a folder; point {DATA_ENV} at a folder (it holds "
                         "cifar-100-python/, cache/ and results/) or unset it")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{where} cannot be created ({exc}); point {DATA_ENV} at a writable folder") from exc
    return root


def device(prefer: str | None = None):
    """Pick a torch device: ``prefer`` or ``$CVXATTN_DEVICE`` if given, else CUDA when present."""
    import torch

    choice = prefer or os.environ.get(DEVICE_ENV)
    if choice:
        try:
            dev = torch.device(choice)
        except RuntimeError as exc:
            raise ValueError(f"device={choice!r} is not a torch device; use 'cpu', 'cuda' or "
                             "'cuda:0' (or unset CVXATTN_DEVICE)") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={choice!r} was asked for, but torch sees no CUDA device; "
                             "use 'cpu' or unset CVXATTN_DEVICE")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a fresh ``numpy.random.Generator(seed)``."""
    import torch

    seed = seed_value("seed", seed)
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def use_style() -> None:
    """Apply the bundled matplotlib style (readable fonts, grid, labelled axes)."""
    import matplotlib.pyplot as plt

    with resources.as_file(resources.files("cvxattn_lib") / "style" / "cvxattn.mplstyle") as p:
        plt.style.use(str(p))


@dataclass(frozen=True)
class Config:
    """What :func:`setup` decided; notebooks read sizes and the device from here."""

    seed: int
    fast: bool
    device: object
    data_root: Path
    rng: np.random.Generator


def versions() -> dict[str, str]:
    """Versions of the packages the collection depends on (``'missing'`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ["numpy", "scipy", "cvxpy", "clarabel", "scs", "torch", "matplotlib",
                 "ipywidgets", "jupyterlab", "tqdm", "timm", "torchvision"]:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def setup(seed: int = 0, verbose: bool = True) -> Config:
    """Seed everything, choose the device, apply the plot style and print what was chosen."""
    import torch

    rng = seed_everything(seed)
    dev = device()
    use_style()
    cfg = Config(seed=int(seed), fast=is_fast(), device=dev, data_root=data_root(), rng=rng)
    if verbose:
        v = versions()
        print("cvxattn setup")
        print("  versions : " + ", ".join(f"{k} {val}" for k, val in v.items()))
        mem = ""
        if dev.type == "cuda":
            free, total = torch.cuda.mem_get_info(dev)
            mem = f" ({torch.cuda.get_device_name(dev)}, {free / 2**30:.1f}/{total / 2**30:.1f} GiB free)"
        print(f"  device   : {dev}{mem}")
        print(f"  fast mode: {cfg.fast} (set {FAST_ENV}=1 for small sizes)")
        print(f"  data root: {cfg.data_root}")
        print(f"  seed     : {cfg.seed}")
    return cfg
