r"""A real image set that ships with a registry package: scikit-learn's handwritten digits, as an
ImageFolder tree, with a fixed split into backbone pretraining, head training and head testing.

**The data.**  ``sklearn.datasets.load_digits()``: 1,797 images of handwritten digits, 8 x 8 pixels
with integer values 0..16, 10 classes (the digits 0-9).  Its description (``load_digits().DESCR``)
calls it "a copy of the test set of the UCI ML hand-written digits datasets", created by E. Alpaydin
(July 1998), whose forms came from 43 people (13 wrote the test set, 30 others the training set):
normalised 32 x 32 bitmaps made by NIST's programs, reduced to 8 x 8 by counting the "on" pixels in
4 x 4 blocks.  It is read from the
installed scikit-learn (``sklearn/datasets/data/digits.csv.gz``), so nothing is downloaded.

**The split** (:func:`split_indices`, seed :data:`SPLIT_SEED`): within each class the indices are
permuted by one ``numpy.random.default_rng(SPLIT_SEED)`` (classes in order 0..9), the first
``round(0.5 n_k)`` go to ``pretrain``, the next ``round(0.25 n_k)`` to ``train`` and the rest to
``test``: 898 / 450 / 449 images, disjoint.  ``pretrain`` is only for the backbone
(:mod:`.pretrain`); the heads are fit on ``train`` and scored on ``test``.

**The tree** (:func:`ensure_digits`): ``<root>/images/{pretrain,train,test}/<digit>/<index>.png``,
``<index>`` the image's row in ``load_digits()`` (4 digits), each an 8 x 8 greyscale PNG with pixel
:math:`\mathrm{round}(255 v/16)`.  ``<root>/images/train`` and ``.../test`` are torchvision's
ImageFolder layout, read by :func:`cvxattn_lib.cifar.sources.load_image_folder` (``--data digits`` on
the command line), so the digits go through the same cache, heads, results and tables as any image
folder.  The tree is built in a temporary folder beside its place, checked against
:data:`CONTENT_SHA256` (the sha256 of every file's relative path, label and decoded pixels, so it
does not depend on the PNG encoder) and renamed into place in one step: a reader never sees a
half-written tree, and calling :func:`ensure_digits` again checks and keeps what is there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..validation import choice, positive_int

#: the data set's name in cache keys, results and tables (``--data digits``)
NAME = "digits"
#: seed of the fixed split
SPLIT_SEED = 0
#: the three splits and the share of each class the first two get (test: the rest)
SPLITS = ("pretrain", "train", "test")
FRACTIONS = {"pretrain": 0.5, "train": 0.25}
#: the tree's folder under the digits root (the root also holds the committed README.md)
IMAGES = "images"
#: sha256 of load_digits()'s images (uint8 0..16, C order) and targets (int64): the source is the one
#: this split was made from
SOURCE_SHA256 = "65e5b4619795efb40c1082f4c350c049e4ad552200d369b6ae99e21eef5e72c5"
#: sha256 of the tree's content (see :func:`content_sha256`)
CONTENT_SHA256 = "c7fda743a9e74b1f8032a8c8667403229869a844ae5cc2ce8216f1afe442261a"
_STAMP = "COMPLETE"


def source_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (1797, 8, 8) with values 0..16, labels int64 (1797,))`` from the installed
    scikit-learn, checked against :data:`SOURCE_SHA256`."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a declared dependency
        raise ImportError("the digits data set ships with scikit-learn: pip install scikit-learn") from exc
    d = load_digits()
    images = np.asarray(d.images)
    if images.shape != (1797, 8, 8) or not np.array_equal(images, np.round(images)) or images.min() < 0 \
            or images.max() > 16:
        raise ValueError(f"sklearn's load_digits() returned images of shape {images.shape} outside the "
                         "documented 1797 x 8 x 8 integers 0..16; this scikit-learn is not the one expected")
    images = images.astype(np.uint8)
    labels = np.asarray(d.target, dtype=np.int64)
    got = source_sha256(images, labels)
    if got != SOURCE_SHA256:
        raise ValueError(f"sklearn's load_digits() data have sha256 {got}, expected {SOURCE_SHA256}: this "
                         "scikit-learn ships other digits than the ones the split was made from")
    return images, labels


def source_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the raw images (uint8, C order) followed by the labels (int64)."""
    h = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """``{split: sorted row indices}`` of the fixed per-class split (module docstring): disjoint, their
    union is every row, each class shared out as ``round(0.5 n_k)``, ``round(0.25 n_k)``, the rest."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = {s: [] for s in SPLITS}
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        a = int(round(FRACTIONS["pretrain"] * idx.size))
        b = a + int(round(FRACTIONS["train"] * idx.size))
        out["pretrain"].append(idx[:a])
        out["train"].append(idx[a:b])
        out["test"].append(idx[b:])
    return {s: np.sort(np.concatenate(v)) for s, v in out.items()}


def to_uint8(images16: np.ndarray) -> np.ndarray:
    r"""Pixels 0..16 -> 0..255: :math:`\mathrm{round}(255 v / 16)` (0 -> 0, 16 -> 255)."""
    return np.rint(np.asarray(images16, dtype=np.float64) * 255.0 / 16.0).astype(np.uint8)


def split_arrays(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images uint8 (N, 8, 8) in 0..255, labels (N,), rows (N,))`` of one split, in row order: the
    pixels the tree holds (the tree's checksum is computed from the same arrays)."""
    choice("split", split, SPLITS)
    images, labels = source_arrays()
    rows = split_indices(labels)[split]
    return to_uint8(images[rows]), labels[rows], rows


def _expected_files() -> list[tuple[str, int, np.ndarray]]:
    """``[(relative path, label, pixels (8, 8) uint8)]`` of the whole tree, sorted by path."""
    images, labels = source_arrays()
    pix = to_uint8(images)
    files = []
    for split, rows in split_indices(labels).items():
        files += [(f"{split}/{labels[i]}/{i:04d}.png", int(labels[i]), pix[i]) for i in rows]
    return sorted(files, key=lambda f: f[0])


def content_sha256(files) -> str:
    """sha256 over ``(relative path, label, 8 x 8 pixels)`` of every file, sorted by path."""
    h = hashlib.sha256()
    for rel, label, pixels in sorted(files, key=lambda f: f[0]):
        h.update(f"{rel}\0{label}\0".encode())
        h.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return h.hexdigest()


def read_tree(folder) -> list[tuple[str, int, np.ndarray]]:
    """What a tree holds: ``[(relative path, label from the class folder, pixels)]`` of every file
    under ``folder/{pretrain,train,test}/<digit>/``; pixels decoded by Pillow (greyscale)."""
    from PIL import Image

    folder = Path(folder)
    files = []
    for split in SPLITS:
        base = folder / split
        if not base.is_dir():
            raise ValueError(f"{base} is missing")
        for cls in sorted(p for p in base.iterdir()):
            if not cls.is_dir() or not cls.name.isdigit():
                raise ValueError(f"{cls} is not a digit class folder")
            for f in sorted(cls.iterdir()):
                with Image.open(f) as img:
                    pixels = np.asarray(img.convert("L"))
                files.append((f"{split}/{cls.name}/{f.name}", int(cls.name), pixels))
    return files


def tree_sha256(folder) -> str:
    """:func:`content_sha256` of the tree under ``folder`` as it is on disk."""
    return content_sha256(read_tree(folder))


def _write_tree(folder: Path, files) -> None:
    from PIL import Image

    for rel, _, pixels in files:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(path)


def _check(folder: Path) -> str | None:
    """None when ``folder`` holds the expected tree, else what is wrong."""
    if not (folder / _STAMP).is_file():
        return "no completion stamp (a tree from another version or an interrupted copy)"
    try:
        got = tree_sha256(folder)
    except (OSError, ValueError) as exc:
        return f"cannot be read ({exc})"
    return None if got == CONTENT_SHA256 else f"content sha256 {got}, expected {CONTENT_SHA256}"


def digits_root(root=None) -> Path:
    """``<data root>/digits`` (``root`` given: ``root/digits``)."""
    from ..runtime import data_root

    return (Path(root) if root is not None else data_root()) / NAME


def ensure_digits(root=None, verify: bool = True) -> Path:
    """The ImageFolder tree of the digits (module docstring) under ``<root>/digits/images``, made if
    missing, and its path (which holds ``pretrain/``, ``train/``, ``test/``).

    ``root`` is the data root (default :func:`cvxattn_lib.runtime.data_root`).  An existing tree is
    checked against :data:`CONTENT_SHA256` (``verify=False``: only its completion stamp) and kept when
    it matches; one that does not match is rebuilt with a warning.  Building writes a temporary folder
    beside the tree, checks its checksum and renames it into place, so an interrupted build leaves no
    half-written tree (only a temporary folder, removed on the next call's failure path or by hand)."""
    base = digits_root(root)
    folder = base / IMAGES
    if folder.is_dir():
        problem = _check(folder) if verify else (None if (folder / _STAMP).is_file() else "no stamp")
        if problem is None:
            return folder
        warnings.warn(f"{folder}: {problem}; rebuilding it from scikit-learn's digits", RuntimeWarning,
                      stacklevel=2)
    base.mkdir(parents=True, exist_ok=True)
    files = _expected_files()
    tmp = Path(tempfile.mkdtemp(prefix=f".{IMAGES}-", dir=base))
    try:
        _write_tree(tmp, files)
        got = tree_sha256(tmp)
        if got != CONTENT_SHA256:
            raise ValueError(f"the digits tree written to {tmp} has content sha256 {got}, expected "
                             f"{CONTENT_SHA256} (scikit-learn's digits or Pillow differ from what this "
                             "library was made with)")
        (tmp / _STAMP).write_text(f"content sha256 {got}\n")
        os.chmod(tmp, 0o755)
        if folder.exists():  # the rebuild case: move the bad tree aside first
            old = Path(tempfile.mkdtemp(prefix=f".{IMAGES}-old-", dir=base))
            os.replace(folder, old / IMAGES)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process put its tree there first: keep it if it is right
            if _check(folder) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_digits_split(split: str, root=None, n: int | None = None, image_size: int | None = None):
    """The first ``n`` images of the ``train`` or ``test`` split as a
    :class:`~cvxattn_lib.cifar.data.CifarSplit` read from the ImageFolder tree (classes interleaved,
    see :mod:`.sources`), named ``digits``."""
    from .sources import load_image_folder

    choice("split", split, ("train", "test"))
    if n is not None:
        n = positive_int("n", n)
    return load_image_folder(ensure_digits(root), split, n, image_size, name=NAME)
