r"""CIFAR-100 on disk, checked by md5, with a plainly labelled synthetic stand-in when offline.

The data live in torchvision's layout under the data root (:func:`cvxattn_lib.data_root`):
``<root>/cifar-100-python/{train,test,meta}``, each a pickled dict (``b'data'`` uint8 (N, 3072) in
R, G, B planes of 32 x 32, ``b'fine_labels'``, ``b'coarse_labels'``, ``b'filenames'``; ``meta`` holds
``b'fine_label_names'``).  Downloads go through torchvision into that root; the files are then read
by :func:`read_split` here: each file is read into memory once, its md5 checked against a manifest
on those bytes, and the same bytes unpickled by :class:`CifarUnpickler`, which refuses every global
the CIFAR-100 format does not use (only NumPy's ndarray reconstruction: no code can run, whatever
the manifest says).  The manifest defaults to the official sums (:data:`CIFAR100_MD5`); passing
another one (a dict or a JSON file) is how tests and custom copies use the same reader on files in
the same format.

Offline, :func:`load_cifar100` says so plainly (URL, md5, where to put the files) and returns a
synthetic stand-in in the same format (seeded class prototypes plus noise, so heads beat chance),
marked ``source='synthetic stand-in'`` everywhere it goes (cache keys, results, tables).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..validation import choice, positive_int, seed_value
from .names import SOURCE_REAL, SOURCE_STANDIN

FOLDER = "cifar-100-python"
SPLITS = ("train", "test")
N_CLASSES = 100
N_COARSE = 20

#: the one registry of what is downloaded: url and md5 of the archive
CIFAR100_ARCHIVE = {"url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                    "filename": "cifar-100-python.tar.gz",
                    "md5": "eb9058c3a382ffc7106e4002c42a8d85"}
#: md5 of each extracted file (the same sums torchvision checks)
CIFAR100_MD5 = {"train": "16019d7e3df5f24257cddd939b257f8d",
                "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                "meta": "7973b15100ade9c7d40fb424638fde48"}


_MD5 = re.compile(r"[0-9a-fA-F]{32}")


class CifarDataError(RuntimeError):
    """CIFAR-100 files are present but wrong (md5 mismatch, missing file, unreadable or unsafe
    pickle, wrong structure)."""


class DataUnavailableWarning(UserWarning):
    """CIFAR-100 could not be found or downloaded; a synthetic stand-in is used instead."""


@dataclass(frozen=True)
class CifarSplit:
    """One split as arrays: ``images`` uint8 (N, 3, H, W) (32 x 32 for CIFAR-100), ``labels`` int64
    (N,) fine labels, ``coarse`` int64 (N,), ``class_names`` (one per class: 100 for CIFAR-100),
    ``source`` (``'cifar100'``, the stand-in, or ``'imagefolder'``), ``dataset`` (the data set's name
    in cache keys, results and tables) and ``fingerprint`` (for sources without an md5 manifest: a
    hash of the images used, part of the cache key; empty for CIFAR-100)."""

    images: np.ndarray
    labels: np.ndarray
    coarse: np.ndarray
    class_names: tuple
    split: str
    source: str
    dataset: str = "cifar100"
    fingerprint: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        """The number of classes of the data set (not of the labels present in this split)."""
        return len(self.class_names)

    def subset(self, n: int | None) -> "CifarSplit":
        """The first ``n`` images (all when ``n`` is None or larger than the split)."""
        if n is None or n >= len(self):
            return self
        n = positive_int("subset", n)
        fingerprint = self.fingerprint and hashlib.sha256(f"{self.fingerprint}:first{n}".encode()).hexdigest()
        return CifarSplit(self.images[:n], self.labels[:n], self.coarse[:n], self.class_names,
                          self.split, self.source, self.dataset, fingerprint)


class CifarDataset(torch.utils.data.Dataset):
    """A torch ``Dataset`` over a :class:`CifarSplit`: items ``(uint8 tensor (3, 32, 32), label)``.

    Use ``DataLoader(ds, batch_size, num_workers=0)`` in notebooks (workers hang in Jupyter)."""

    def __init__(self, split: CifarSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i):
        return torch.from_numpy(np.ascontiguousarray(self.split.images[i])), int(self.split.labels[i])


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(manifest) -> dict:
    """``None`` -> the official md5s; a dict or a JSON file ``{"train": md5, "test": md5, "meta": md5}``."""
    if manifest is None:
        return dict(CIFAR100_MD5)
    where = "manifest"
    if isinstance(manifest, (str, Path)):
        path = Path(manifest)
        where = f"manifest {path}"
        if not path.is_file():
            raise ValueError(f"manifest={str(path)!r} is not a file; give a JSON file mapping "
                             "'train', 'test' and 'meta' to md5 sums (or leave it out for the official ones)")
        try:
            manifest = json.loads(path.read_bytes().decode("utf-8"))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"manifest {path} is not valid JSON ({exc}); it must be an object mapping "
                             "'train', 'test' and 'meta' to md5 sums") from exc
    if not isinstance(manifest, dict) or set(manifest) != set(CIFAR100_MD5):
        raise ValueError(f"{where} must map exactly {sorted(CIFAR100_MD5)} to md5 sums, got {manifest!r}")
    bad = {k: v for k, v in manifest.items() if not (isinstance(v, str) and _MD5.fullmatch(v))}
    if bad:
        raise ValueError(f"{where}: every md5 must be 32 hexadecimal digits, got {bad!r}")
    return {k: v.lower() for k, v in manifest.items()}


def how_to_get(root: Path) -> str:
    """The manual steps to get CIFAR-100 into ``root`` (printed when it is missing)."""
    a = CIFAR100_ARCHIVE
    return (f"To get the real data, download {a['url']} (md5 {a['md5']}, 161 MB) and extract it into "
            f"{root} so that {root / FOLDER}/train, test and meta exist "
            f"(e.g. `tar -xzf {a['filename']} -C {root}`), or run "
            f"`python -m cvxattn_lib.cifar extract --data-root {root}` on a machine with internet.")


def _folder_paths(root: Path, names) -> dict:
    """The paths of ``names`` under ``<root>/cifar-100-python``; a missing one is a
    :class:`CifarDataError`."""
    folder = Path(root) / FOLDER
    paths = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            raise CifarDataError(f"{path} is missing (the folder {folder} exists, so the copy is "
                                 f"incomplete). Delete {folder} and get the data again. " + how_to_get(root))
        paths[name] = path
    return paths


def read_checked(path: Path, want: str, root: Path) -> bytes:
    """The bytes of ``path``, read once, whose md5 is ``want`` (else :class:`CifarDataError`).

    The caller unpickles these very bytes, so the file cannot change between check and use."""
    payload = Path(path).read_bytes()
    got = hashlib.md5(payload).hexdigest()
    if got != want:
        folder = Path(root) / FOLDER
        raise CifarDataError(f"{path} has md5 {got}, expected {want}: the file is corrupt or not "
                             f"CIFAR-100. Delete {folder} and get the data again. " + how_to_get(root))
    return payload


def check_files(root: Path, manifest=None) -> dict:
    """Check ``<root>/cifar-100-python/{train,test,meta}`` against the manifest.

    Returns the paths; raises :class:`CifarDataError` naming the bad file and the expected md5."""
    sums = load_manifest(manifest)
    paths = _folder_paths(root, sums)
    for name, want in sums.items():
        read_checked(paths[name], want, root)
    return paths


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 writes ``bytes`` in protocol-2 pickles, and nothing more."""
    if not isinstance(text, str) or not isinstance(encoding, str) \
            or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not "
                                     "how CIFAR-100 stores bytes")
    return text.encode("latin1")


@lru_cache(maxsize=1)
def _allowed_globals() -> dict:
    reconstruct = np.zeros(1).__reduce__()[0]      # numpy.(_)core.multiarray._reconstruct
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]   # numpy.(_)core.numeric._frombuffer (protocol 5)
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _latin1_encode}
    for package in ("numpy.core", "numpy._core"):  # written by NumPy 1 and NumPy 2 respectively
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """An unpickler for the CIFAR-100 python format only: dicts, lists, ints, bytes and uint8 NumPy
    arrays.  ``find_class`` allows NumPy's array reconstruction (``_reconstruct`` / ``_frombuffer``,
    ``ndarray``, ``dtype``) and the latin-1 ``_codecs.encode`` of protocol-2 bytes; any other global
    (``os.system``, ``builtins.eval``, ...) raises :class:`pickle.UnpicklingError`, so loading a
    crafted file cannot run code."""

    def find_class(self, module, name):
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed: a CIFAR-100 file holds "
                                         "only dicts, lists, ints, bytes and uint8 NumPy arrays")
        return obj


def unpickle_cifar(payload: bytes, path) -> dict:
    """Unpickle one CIFAR-100 file's bytes with :class:`CifarUnpickler`; any failure (a forbidden
    global, a truncated stream, a top level that is not a dict) is a :class:`CifarDataError` naming
    ``path``."""
    try:
        obj = CifarUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure is a data error for the user
        raise CifarDataError(f"{path} could not be read as a CIFAR-100 pickle "
                             f"({type(exc).__name__}: {exc}); the file is not CIFAR-100 or is damaged. "
                             "Delete it and get the data again.") from exc
    if not isinstance(obj, dict):
        raise CifarDataError(f"{path} holds a pickled {type(obj).__name__}, not the dict of the CIFAR-100 "
                             "format")
    return obj


def _int_list(raw: dict, key: bytes, n: int, high: int, path) -> np.ndarray:
    values = raw[key]
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) != n \
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        size = len(values) if hasattr(values, "__len__") else "?"
        raise CifarDataError(f"{path}: {key!r} must be {n} integers (one per image), got "
                             f"{type(values).__name__} of length {size}")
    out = np.asarray(values, dtype=np.int64).reshape(n)
    if n and (out.min() < 0 or out.max() >= high):
        raise CifarDataError(f"{path}: {key!r} must lie in [0, {high}), found values from {out.min()} to "
                             f"{out.max()}")
    return out


def read_split(root: Path, split: str, manifest=None) -> CifarSplit:
    """Read one split: the split's file and ``meta`` are each read once, md5-checked on those bytes
    and unpickled with :class:`CifarUnpickler`; the structure is then checked (uint8 (N, 3072)
    data, N fine labels in [0, 100) and coarse labels in [0, 20), 100 class names)."""
    choice("split", split, SPLITS)
    sums = load_manifest(manifest)
    paths = _folder_paths(root, sums)
    raw = unpickle_cifar(read_checked(paths[split], sums[split], root), paths[split])
    meta = unpickle_cifar(read_checked(paths["meta"], sums["meta"], root), paths["meta"])
    path = paths[split]
    try:
        data = raw[b"data"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != 3 * 32 * 32:
            raise CifarDataError(f"{path}: b'data' must be a uint8 array (N, 3072), got "
                                 f"{getattr(data, 'dtype', type(data).__name__)} "
                                 f"{getattr(data, 'shape', '')}")
        n = data.shape[0]
        labels = _int_list(raw, b"fine_labels", n, N_CLASSES, path)
        coarse = _int_list(raw, b"coarse_labels", n, N_COARSE, path)
        names = meta[b"fine_label_names"]
    except KeyError as exc:
        where = paths["meta"] if exc.args and exc.args[0] == b"fine_label_names" else path
        raise CifarDataError(f"{where} lacks the key {exc} of the CIFAR-100 format") from exc
    if not isinstance(names, (list, tuple)) or len(names) != N_CLASSES \
            or not all(isinstance(v, (bytes, str)) for v in names):
        raise CifarDataError(f"{paths['meta']}: b'fine_label_names' must be {N_CLASSES} names")
    names = tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in names)
    images = data.reshape(-1, 3, 32, 32)
    return CifarSplit(images, labels, coarse, names, split, SOURCE_REAL)


def download(root: Path) -> bool:
    """Download and extract the archive into ``root`` with torchvision (md5-checked); False offline."""
    from torchvision.datasets.utils import download_and_extract_archive

    from .net import reachable

    a = CIFAR100_ARCHIVE
    # fail fast offline (torchvision's urllib has no timeout and would hang on a filtered network);
    # the probe goes through urllib too, so it honours HTTPS_PROXY as the download does
    if not reachable(a["url"], timeout=5.0):
        warnings.warn(f"Cannot reach {a['url']} to download CIFAR-100 (offline, or the proxy in "
                      "HTTPS_PROXY does not answer)", DataUnavailableWarning, stacklevel=2)
        return False
    try:
        download_and_extract_archive(a["url"], str(root), filename=a["filename"], md5=a["md5"])
    except Exception as exc:  # offline, DNS failure, HTTP error, bad archive
        warnings.warn(f"Downloading CIFAR-100 failed: {type(exc).__name__}: {exc}", DataUnavailableWarning,
                      stacklevel=2)
        return False
    return True


def synthetic_cifar100(split: str, n: int, seed: int = 0) -> CifarSplit:
    r"""A synthetic stand-in in the CIFAR-100 format (NOT CIFAR-100).

    Class k has a smooth colour prototype :math:`P_k` (an 4 x 4 x 3 random pattern upsampled to
    32 x 32); an image is :math:`\mathrm{clip}(128 + 60 P_k + 40\,\varepsilon)` with Gaussian noise
    :math:`\varepsilon` and a random shift, so the classes are learnable but not trivial.  Prototypes
    depend on ``seed`` only; the split picks different noise (train and test share the classes).
    """
    choice("split", split, SPLITS)
    n = positive_int("n", n)
    seed = seed_value("seed", seed)
    proto_rng = np.random.default_rng(seed)
    low = proto_rng.standard_normal((N_CLASSES, 3, 4, 4))
    protos = np.repeat(np.repeat(low, 8, axis=2), 8, axis=3)  # (100, 3, 32, 32)
    rng = np.random.default_rng([seed, SPLITS.index(split) + 1])
    labels = np.arange(n, dtype=np.int64) % N_CLASSES
    rng.shuffle(labels)
    shifts = rng.integers(-3, 4, size=(n, 2))
    imgs = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        p = np.roll(protos[labels[i]], tuple(shifts[i]), axis=(1, 2))
        x = 128.0 + 60.0 * p + 40.0 * rng.standard_normal((3, 32, 32))
        imgs[i] = np.clip(x, 0, 255).astype(np.uint8)
    names = tuple(f"standin_{k:02d}" for k in range(N_CLASSES))
    return CifarSplit(imgs, labels, labels // (N_CLASSES // N_COARSE), names, split, SOURCE_STANDIN)


STANDIN_SIZES = {"train": 5000, "test": 1000}


def load_cifar100(split: str = "train", root=None, download_missing: bool = True, manifest=None,
                  standin: bool = True, standin_size: int | None = None, seed: int = 0,
                  verbose: bool = True) -> CifarSplit:
    """CIFAR-100 ``split`` from ``root`` (default :func:`cvxattn_lib.data_root`), md5-checked.

    * files present: checked against ``manifest`` (default the official md5s) and read; a mismatch
      raises :class:`CifarDataError` (never silently replaced by the stand-in);
    * folder absent: downloaded through torchvision when ``download_missing`` (and checked);
    * still absent (offline): a plain message how to get the data, then, if ``standin``, a synthetic
      stand-in of ``standin_size`` images (default 5000 train / 1000 test) in the same format,
      else :class:`CifarDataError`.
    """
    from ..runtime import data_root

    choice("split", split, SPLITS)
    root = Path(root) if root is not None else data_root()
    if root.exists() and not root.is_dir():
        raise ValueError(f"data root {root} is a file, not a folder; pass a folder (or unset CVXATTN_DATA)")
    if not root.is_dir():
        raise ValueError(f"data root {root} does not exist; create it or pass an existing folder")
    folder = root / FOLDER
    if not folder.exists() and download_missing:
        download(root)
    if folder.exists():
        return read_split(root, split, manifest)
    msg = (f"CIFAR-100 is not available: {folder} does not exist and it could not be downloaded "
           f"(this machine is probably offline). " + how_to_get(root))
    if not standin:
        raise CifarDataError(msg)
    n = standin_size or STANDIN_SIZES[split]
    msg += (f"\nContinuing on a SYNTHETIC STAND-IN ({n} {split} images in the CIFAR-100 format, 100 "
            f"made-up classes, seed {seed}). Accuracies on it say nothing about CIFAR-100.")
    warnings.warn(msg, DataUnavailableWarning, stacklevel=2)
    if verbose:
        print(msg)
    return synthetic_cifar100(split, n, seed)


def write_cifar_folder(root: Path, splits: dict, class_names=None) -> dict:
    """Write ``splits`` ({'train': CifarSplit-like, 'test': ...}) in CIFAR-100's on-disk format
    under ``<root>/cifar-100-python``; return the md5 manifest of the files (for tests and copies)."""
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, sp in splits.items():
        n = len(sp.labels)
        raw = {b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(n)],
               b"batch_label": f"{name} batch".encode(),
               b"fine_labels": [int(v) for v in sp.labels],
               b"coarse_labels": [int(v) for v in sp.coarse],
               b"data": np.ascontiguousarray(sp.images.reshape(n, -1), dtype=np.uint8)}
        with open(folder / name, "wb") as f:
            pickle.dump(raw, f)
    names = class_names or [f"class_{k:02d}" for k in range(N_CLASSES)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [s.encode() for s in names],
                     b"coarse_label_names": [f"coarse_{k:02d}".encode() for k in range(N_COARSE)]}, f)
    return {k: md5sum(folder / k) for k in CIFAR100_MD5}
