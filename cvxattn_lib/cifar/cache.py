r"""Feature cache: backbone tokens stored once as fp16 ``.npy`` files, memory-mapped by the heads.

Layout under the data root: ``cache/cifar100/<key>/`` (an image folder's caches: ``cache/<its
name>/<key>/``) with

* ``features.npy`` fp16 (N, s, d) -- a plain NumPy array file,
  ``numpy.load(path, mmap_mode='r', allow_pickle=False)`` reads it without pickle (so does
  ``torch.from_numpy`` on the map);
* ``labels.npy`` int64 (N,);
* ``meta.json`` -- the key's fields (backbone, pretrained, split, transform, library version, data
  source, N), shapes, the md5 of ``labels.npy`` and the md5 of each 64 MiB block of
  ``features.npy`` (hashed on parallel threads: hashlib releases the GIL, so checking 5 GB takes
  about a second on 16 cores).

The key names the backbone, whether its weights were pretrained, the split, the image transform, the
data source, the number of images and the library version, plus a short hash of all of them; for an
image folder (:mod:`cvxattn_lib.cifar.sources`) also the data set's name, its number of classes and a
hash of the images used.  The backbone is a :class:`~cvxattn_lib.cifar.backbone.Backbone` or a
:class:`~cvxattn_lib.cifar.resnet.ResNetBackbone` (anything with ``name``, ``pretrained``,
``transform``, ``tokens`` and ``token_shape``).

Writing is crash-safe: features go into ``features.npy.partial`` (pre-allocated with its final
header) chunk by chunk; after each chunk is flushed, ``progress.json`` (rewritten atomically: temp
file + ``os.replace``) records how many images are done.  A killed extraction resumes at the first
chunk not recorded; the final name appears only through an atomic rename once every chunk is in and
``meta.json`` (with the checksum) is written, so a reader never sees a half-written cache.  On load the
header, size, labels' md5 and (by default) features' md5 are checked; a mismatch raises
:class:`CacheCorruptError`.  Features that are not finite (NaN, or inf from fp16 overflow) are refused
before they are written.

Two jobs on one data root: every temporary file has a unique name (``tempfile.mkstemp`` in the target
folder), and extraction into a cache folder holds an exclusive lock (``fcntl.flock`` on
``<key>/extract.lock``, released by the kernel when the process ends, even killed), so a second job
waits (or, with ``lock_timeout``, raises :class:`CacheLockedError`) instead of truncating the first
job's ``features.npy.partial``; when it gets the lock it uses the cache the first job finished.
JSON is written without NaN (``allow_nan=False``; non-finite floats become the strings ``"nan"``,
``"inf"``, ``"-inf"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..validation import choice, positive_int
from .backbone import Backbone, run_with_backoff
from .data import CifarSplit
from .names import IMAGEFOLDER, REDUCTIONS, SOURCE_REAL

BLOCK = 64 << 20  # bytes per checksummed block


def block_md5s(path: Path, block: int = BLOCK, workers: int | None = None) -> list[str]:
    """md5 of each ``block``-byte block of a file, computed on a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    size = Path(path).stat().st_size

    def one(start: int) -> str:
        with open(path, "rb") as f:
            f.seek(start)
            return hashlib.md5(f.read(min(block, size - start))).hexdigest()

    starts = range(0, max(size, 1), block)
    with ThreadPoolExecutor(max_workers=workers or min(16, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, starts))

CACHE_SUBDIR = Path("cache") / "cifar100"
DTYPE = np.float16


class CacheCorruptError(RuntimeError):
    """A cache file does not match its metadata (truncated, overwritten, wrong header)."""


class CacheLockedError(RuntimeError):
    """Another job holds the extraction lock of a cache folder (and ``lock_timeout`` ran out)."""


class CacheRebuildWarning(UserWarning):
    """A corrupt cache was found and is being rebuilt."""


def library_version() -> str:
    from .. import __version__

    return __version__


def cache_fields(backbone: Backbone, data: CifarSplit, seed: int = 0) -> dict:
    """The fields a cache key is made of."""
    fields = {"backbone": backbone.name, "pretrained": bool(backbone.pretrained), "split": data.split,
              "transform": backbone.transform, "source": data.source, "n": len(data),
              "version": library_version(), "dtype": np.dtype(DTYPE).name}
    if data.source == IMAGEFOLDER:  # its name, class count and a hash of the very images used
        fields.update(dataset=data.dataset, classes=data.n_classes, fingerprint=data.fingerprint)
    elif data.source != SOURCE_REAL:
        fields["seed"] = int(seed)
    return fields


def cache_key(fields: dict) -> str:
    """``<backbone>-<pretrained|random>-<split>-n<N>-<source>-v<version>-<hash>``; the source is
    ``real`` (CIFAR-100), ``standin``, or ``<data set name>-c<classes>`` for an image folder."""
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    src = "real" if fields["source"] == SOURCE_REAL else (
        f"{fields['dataset']}-c{fields['classes']}" if fields["source"] == IMAGEFOLDER else "standin")
    weights = "pretrained" if fields["pretrained"] else "random"
    return (f"{fields['backbone']}-{weights}-{fields['split']}-n{fields['n']}-{src}"
            f"-v{fields['version']}-{digest}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


@contextlib.contextmanager
def _temp_beside(path: Path):
    """A unique temporary file next to ``path`` (same folder, so ``os.replace`` is atomic), opened
    for binary writing and renamed onto ``path`` when the block ends; removed if the block fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    with _temp_beside(Path(path)) as f:
        f.write(payload)


def jsonable(obj):
    """``obj`` with NumPy scalars as Python numbers, tuples as lists, paths as strings and every
    non-finite float as the string ``"nan"``, ``"inf"`` or ``"-inf"`` (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: Path, obj) -> None:
    """Write JSON to ``path`` through a unique temporary file and ``os.replace`` (never half-written,
    never two writers on one temporary file); non-finite floats are written as strings
    (:func:`jsonable`), never as the invalid JSON ``NaN``."""
    text = json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=False)
    _atomic_write_bytes(Path(path), (text + "\n").encode())


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    with _temp_beside(Path(path)) as f:
        np.save(f, arr, allow_pickle=False)


@contextlib.contextmanager
def cache_lock(folder: Path, timeout: float | None = None, verbose: bool = True):
    """Hold the exclusive extraction lock of a cache ``folder`` (``fcntl.flock`` on
    ``folder/extract.lock``).  Waits while another job holds it (saying so once); after ``timeout``
    seconds (None: no limit) raises :class:`CacheLockedError` naming the lock file.  Where ``fcntl``
    does not exist (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_path = Path(folder) / "extract.lock"
    with open(lock_path, "a+b") as f:
        start, said = time.monotonic(), False
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if timeout is not None and waited >= timeout:
                    raise CacheLockedError(
                        f"another job is extracting into {folder} (it holds the lock {lock_path}); "
                        f"gave up after {waited:.1f} s. Wait for it to finish and run again (its cache "
                        "will be used). The lock ends with that job's process, so a stale lock "
                        "cannot block you.") from None
                if not said and verbose:
                    print(f"waiting for another job extracting into {folder} (lock {lock_path})",
                          flush=True)
                    said = True
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@dataclass
class FeatureCache:
    """A finished cache: ``features`` fp16 memory map (N, s, d), ``labels`` int64 (N,), ``meta``."""

    path: Path
    features: np.ndarray
    labels: np.ndarray
    meta: dict

    @property
    def key(self) -> str:
        return self.path.name

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def tensor(self, device=None, dtype=torch.float16) -> torch.Tensor:
        """All features as one tensor on ``device`` (fp16 by default: half the memory)."""
        return to_device(self.features, device, dtype)


def to_device(X: np.ndarray, device=None, dtype=torch.float16, chunk: int = 4096) -> torch.Tensor:
    """A (memory-mapped) array as one tensor on ``device``, copied in chunks (no full copy in RAM)."""
    out = torch.empty(X.shape, dtype=dtype, device=device)
    for i in range(0, X.shape[0], chunk):
        out[i:i + chunk] = torch.from_numpy(np.array(X[i:i + chunk])).to(device=device, dtype=dtype)
    return out


def open_cache(path, verify: bool = True) -> FeatureCache:
    """Open a finished cache folder; check header, shape, file size, the labels' md5 (always: the
    file is small) and (``verify``) the features' block md5s.

    Raises :class:`CacheCorruptError` naming the file and what is wrong."""
    path = Path(path)
    meta_path, feat_path, lab_path = path / "meta.json", path / "features.npy", path / "labels.npy"
    if not (meta_path.is_file() and feat_path.is_file() and lab_path.is_file()):
        raise FileNotFoundError(f"no finished feature cache in {path} (needs meta.json, features.npy, "
                                "labels.npy); run `python -m cvxattn_lib.cifar extract`")
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"it holds a JSON {type(meta).__name__}, not an object")
        shape = tuple(int(v) for v in meta["shape"])
        if len(shape) != 3:
            raise ValueError(f"shape {shape} is not (N, s, d)")
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheCorruptError(f"{meta_path} is not valid cache metadata ({type(exc).__name__}: {exc}); "
                                f"delete {path} and extract again (or pass --rebuild)") from exc
    size = feat_path.stat().st_size
    if size != meta.get("bytes"):
        raise CacheCorruptError(f"corrupt feature cache {feat_path}: file has {size} bytes, metadata says "
                                f"{meta.get('bytes')} (truncated or overwritten). Delete {path} and extract "
                                "again (or pass --rebuild).")
    label_bytes = lab_path.read_bytes()  # read once: checked and parsed from the same bytes
    if hashlib.md5(label_bytes).hexdigest() != meta.get("labels_md5"):
        raise CacheCorruptError(f"corrupt feature cache {lab_path}: its md5 differs from the recorded "
                                f"labels_md5 {meta.get('labels_md5')!r} (overwritten, or written before "
                                f"labels were checksummed). Delete {path} and extract again (or pass "
                                "--rebuild).")
    try:
        feats = np.load(feat_path, mmap_mode="r", allow_pickle=False)
        labels = np.load(io.BytesIO(label_bytes), allow_pickle=False)
    except Exception as exc:
        raise CacheCorruptError(f"{feat_path} (or labels.npy) cannot be read as a NumPy array "
                                f"({type(exc).__name__}: {exc}); delete {path} and extract again "
                                "(or pass --rebuild)") from exc
    problems = []
    if feats.shape != shape or feats.dtype != np.dtype(meta.get("dtype", "float16")):
        problems.append(f"array is {feats.dtype} {feats.shape}, metadata says {meta.get('dtype')} {shape}")
    if labels.shape != (shape[0],):
        problems.append(f"labels.npy has shape {labels.shape}, expected ({shape[0]},)")
    if not problems and verify:
        got, want = block_md5s(feat_path), meta.get("block_md5")
        if got != want:
            bad = [i for i, (a, b) in enumerate(zip(got, want or [])) if a != b] or ["all"]
            problems.append(f"md5 of block(s) {bad[:5]} ({BLOCK >> 20} MiB each) differ from the "
                            "recorded sums")
    if problems:
        raise CacheCorruptError(f"corrupt feature cache {feat_path}: " + "; ".join(problems)
                                + f". Delete {path} and extract again (or pass --rebuild).")
    return FeatureCache(path, feats, labels, meta)


def cache_dir(root=None, dataset: str = "cifar100") -> Path:
    """``<root>/cache/<dataset>``: CIFAR-100 and its stand-in under ``cache/cifar100``, an image
    folder's caches under its own name."""
    from ..runtime import data_root

    base = (Path(root) if root is not None else data_root())
    return base / CACHE_SUBDIR if dataset == "cifar100" else base / "cache" / dataset


def find_caches(root=None, dataset: str = "cifar100", **match) -> list[Path]:
    """Folders of finished caches of ``dataset`` under ``root`` whose metadata equal every ``match``
    field (e.g. backbone, split, source, n); pretrained ones first.  Unreadable ones are skipped
    (checked when opened)."""
    out = []
    base = cache_dir(root, dataset)
    if not base.is_dir():
        return out
    pretrained = {}
    for meta_path in sorted(base.glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, OSError):
            continue
        if not isinstance(meta, dict):  # corrupt: open_cache reports it
            continue
        if all(meta.get(k) == v for k, v in match.items() if v is not None) \
                and (meta_path.parent / "features.npy").is_file():
            out.append(meta_path.parent)
            pretrained[meta_path.parent] = bool(meta.get("pretrained"))
    out.sort(key=lambda p: not pretrained[p])
    return out


def extract_features(backbone: Backbone, data: CifarSplit, root=None, batch_size: int = 256,
                     chunk_size: int | None = None, seed: int = 0, rebuild: bool = False,
                     verify: bool = True, progress: bool = True,
                     after_chunk: Callable[[int], None] | None = None,
                     lock_timeout: float | None = None) -> FeatureCache:
    """Tokens of every image of ``data`` through ``backbone``, cached (load if present, else extract).

    ``chunk_size`` images (default ``8 * batch_size``) are extracted, written and recorded at a time;
    a run that is killed resumes at the first unrecorded chunk.  ``batch_size`` halves on CUDA OOM.
    A corrupt finished cache is reported (:class:`CacheRebuildWarning`) and rebuilt.  Extraction
    holds the cache folder's lock (:func:`cache_lock`): a second job on the same cache waits for
    the first (at most ``lock_timeout`` seconds, then :class:`CacheLockedError`; None waits) and
    then uses what it finished.  A chunk with NaN or inf features raises ``ValueError`` before it is
    written.  ``after_chunk(done)`` is called after each recorded chunk (tests interrupt extraction
    there).
    """
    batch_size = positive_int("batch_size", batch_size)
    chunk_size = positive_int("chunk_size", chunk_size or 8 * batch_size)
    bad_timeout = isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) \
        or not lock_timeout >= 0
    if lock_timeout is not None and bad_timeout:
        raise ValueError(f"lock_timeout must be None (wait) or a number of seconds >= 0, "
                         f"got {lock_timeout!r}")
    fields = cache_fields(backbone, data, seed)
    path = cache_dir(root, getattr(data, "dataset", "cifar100")) / cache_key(fields)
    asked_rebuild = rebuild
    if (path / "features.npy").exists() and not rebuild:  # a finished cache (renamed last)
        try:
            return open_cache(path, verify=verify)
        except (CacheCorruptError, FileNotFoundError) as exc:
            warnings.warn(f"{exc}\nRebuilding it.", CacheRebuildWarning, stacklevel=2)
            rebuild = True
    path.mkdir(parents=True, exist_ok=True)
    with cache_lock(path, lock_timeout, verbose=progress):
        if not asked_rebuild and (path / "features.npy").exists():
            try:  # another job may have finished (or rebuilt) it while this one waited
                return open_cache(path, verify=verify)
            except (CacheCorruptError, FileNotFoundError):
                rebuild = True
        return _extract_locked(backbone, data, path, fields, batch_size, chunk_size, rebuild, progress,
                               after_chunk)


def _extract_locked(backbone, data, path, fields, batch_size, chunk_size, rebuild, progress, after_chunk):
    """The body of :func:`extract_features`, run while holding the folder's lock."""
    if rebuild:
        for name in ("features.npy", "labels.npy", "meta.json", "progress.json", "features.npy.partial"):
            (path / name).unlink(missing_ok=True)
    s, d = backbone.token_shape()
    n = len(data)
    partial, prog_path = path / "features.npy.partial", path / "progress.json"
    plan = {"fields": fields, "shape": [n, s, d]}  # any chunk or batch size may resume
    done = 0
    if prog_path.exists() and partial.exists():
        try:
            prog = json.loads(prog_path.read_text())
            if prog.get("plan") == jsonable(plan):
                done = int(prog["done"])
        except (ValueError, KeyError, TypeError, AttributeError):
            done = 0
    if done > 0:
        try:
            mm = np.load(partial, mmap_mode="r+", allow_pickle=False)
            if mm.shape != (n, s, d) or mm.dtype != DTYPE or not 0 < done <= n:
                done = 0
        except (ValueError, OSError):  # a damaged partial file: start over
            done = 0
    if done == 0:
        mm = np.lib.format.open_memmap(partial, mode="w+", dtype=DTYPE, shape=(n, s, d))
        atomic_write_json(prog_path, {"plan": plan, "done": 0})

    def run(imgs: np.ndarray) -> torch.Tensor:
        return backbone.tokens(torch.from_numpy(np.ascontiguousarray(imgs))).half()

    bar = tqdm(total=n, initial=done, desc=f"extract {data.split} ({backbone.name})", unit="img",
               disable=not progress)
    try:
        for start in range(done, n, chunk_size):
            stop = min(n, start + chunk_size)
            feats, batch_size = run_with_backoff(run, data.images[start:stop], batch_size)
            finite = torch.isfinite(feats).flatten(1).all(1)
            if not bool(finite.all()):
                bad = (start + torch.nonzero(~finite).flatten()).tolist()
                raise ValueError(
                    f"backbone {backbone.name!r} gave non-finite features (NaN or inf; inf is also what "
                    f"values beyond fp16's 65504 become) for {len(bad)} image(s) of the {data.split} split, "
                    f"e.g. index(es) {bad[:5]}; nothing of images {start}..{stop - 1} was written to "
                    f"{path}. Check the backbone and its weights (or the images).")
            mm[start:stop] = feats.numpy()
            mm.flush()
            atomic_write_json(prog_path, {"plan": plan, "done": stop})
            bar.update(stop - start)
            if after_chunk is not None:
                after_chunk(stop)
    finally:
        bar.close()
        del mm
    _atomic_save_npy(path / "labels.npy", np.asarray(data.labels, dtype=np.int64))
    meta = dict(fields, shape=[n, s, d], bytes=partial.stat().st_size, block_md5=block_md5s(partial),
                labels_md5=hashlib.md5((path / "labels.npy").read_bytes()).hexdigest(),
                tokens=s, features=d, key=path.name)
    atomic_write_json(path / "meta.json", meta)
    os.replace(partial, path / "features.npy")
    prog_path.unlink(missing_ok=True)
    return open_cache(path, verify=False)


def remove_cache(path) -> None:
    """Delete one cache folder."""
    shutil.rmtree(Path(path), ignore_errors=True)




def _join(before: str, step: str) -> str:
    return step if before == "none" else f"{before}+{step}"


def reduce_features(train: np.ndarray, test: np.ndarray, dim: int | None = None,
                    method: str = "pca", tokens: int | None = None, chunk: int = 2048, device=None):
    r"""Smaller features for heads whose lifted matrices would not fit (float32 outputs).

    * ``tokens`` t: average-pool the token grid to t tokens (a square grid of sqrt(t) x sqrt(t) when
      both are squares, e.g. 196 -> 49, else 1-D adaptive pooling);
    * ``dim`` d with ``method='pca'``: project each token on the top-d principal directions of the
      *train* tokens, :math:`x \mapsto (x-\mu)V_d` (fit in float64 on train only, the moments
      accumulated on ``device``: a GPU does 50k x 196 tokens in a second);
      ``method='pool'``: average groups of adjacent features down to d.
    Returns ``(train', test', info)`` (float32 when reduced, else the inputs as they are); ``info``
    records what was done (for the results file).
    """
    choice("method", method, REDUCTIONS)
    s, F = train.shape[1:]
    info = {"tokens": s, "features": F, "method": "none"}

    def pool_tokens(x: torch.Tensor) -> torch.Tensor:
        g, h = int(round(np.sqrt(s))), int(round(np.sqrt(tokens)))
        if g * g == s and h * h == tokens:
            x = x.transpose(1, 2).reshape(x.shape[0], F, g, g)
            return torch.nn.functional.adaptive_avg_pool2d(x, h).flatten(2).transpose(1, 2)
        return torch.nn.functional.adaptive_avg_pool1d(x.transpose(1, 2), tokens).transpose(1, 2)

    def apply(X: np.ndarray, fn) -> np.ndarray:
        parts = [fn(torch.from_numpy(np.asarray(X[i:i + chunk], dtype=np.float32)))
                 for i in range(0, X.shape[0], chunk)]
        return torch.cat(parts).numpy()

    if tokens is not None:
        tokens = positive_int("tokens", tokens)
        if tokens > s:
            raise ValueError(f"tokens must be at most the backbone's {s} tokens, got {tokens}")
        train, test = apply(train, pool_tokens), apply(test, pool_tokens)
        info.update(tokens=tokens, method="pool-tokens")
    if dim is None or method == "none":
        return train, test, info  # unchanged (fp16 memory maps stay maps: no copy of 5 GB)
    dim = positive_int("dim", dim)
    if dim > F:
        raise ValueError(f"dim must be at most the backbone's {F} features, got {dim}")
    if method == "pool":
        def fn(x):
            return torch.nn.functional.adaptive_avg_pool1d(x.reshape(-1, 1, F), dim).reshape(
                x.shape[0], x.shape[1], dim)
        info.update(features=dim, method=_join(info["method"], "pool-features"))
        return apply(train, fn), apply(test, fn), info
    # PCA on train tokens: mean and second moment in float64 on ``device``, chunked over the
    # (possibly memory-mapped) array; the covariance is F x F, so its eigh is cheap anywhere
    dev = torch.device(device) if device is not None else torch.device("cpu")
    total, mu, C = 0, torch.zeros(F, dtype=torch.float64, device=dev), torch.zeros(
        (F, F), dtype=torch.float64, device=dev)
    step = max(1, chunk // 4)
    for i in range(0, train.shape[0], step):
        x = torch.from_numpy(np.array(train[i:i + step])).to(dev).double().reshape(-1, F)
        total += x.shape[0]
        mu += x.sum(0)
        C += x.T @ x
    mu /= total
    C = C / total - torch.outer(mu, mu)
    evals, evecs = (t.cpu().numpy() for t in torch.linalg.eigh(C))
    mu = mu.cpu().numpy()
    V = torch.from_numpy(evecs[:, ::-1][:, :dim].astype(np.float32).copy())
    m = torch.from_numpy(mu.astype(np.float32))

    def proj(x):
        return (x - m) @ V
    info.update(features=dim, method=_join(info["method"], "pca"),
                explained_variance=float(evals[::-1][:dim].sum() / max(evals.sum(), 1e-300)))
    return apply(train, proj), apply(test, proj), info
