r"""Image data sources other than CIFAR-100: any folder in torchvision's ``ImageFolder`` layout.

Two such sources on the command line: ``--data imagefolder:PATH`` (any folder) and ``--data digits``
(scikit-learn's handwritten digits, real 8 x 8 images that ship inside that package, written once
as an ImageFolder tree under ``<data root>/digits/images`` by :mod:`cvxattn_lib.cifar.digits` and
then read here like any other folder, named ``digits``).

Layout (the one ``torchvision.datasets.ImageFolder`` reads, one tree per split)::

    PATH/train/<class>/<image>.png|jpg|jpeg|bmp|gif|tif|tiff|webp
    PATH/test/<class>/<image>...

The class names are the sub-folders of ``PATH/train``, sorted (as torchvision does), and the label of
an image is its class's index there; ``PATH/test`` may hold those classes or a subset of them (a test
class that the training split lacks is an error).  A single folder without ``train``/``test`` is
refused with the layout above (this source never splits data itself, so its test split is the one the
data's authors chose).  Images are read with Pillow, converted to RGB and, when ``image_size`` is
given, resized (bilinear) to that square size; without it every image must have the size of the
first one.

Order: images are taken class by class in turn (the first file of every class, then the second,
...; files sorted by name within a class), so the first ``n`` images of a split -- what ``--subset``
keeps -- hold every class as evenly as the files allow.

The result is a :class:`cvxattn_lib.cifar.data.CifarSplit` (uint8 (N, 3, H, W), int64 labels,
``class_names``) whose ``source`` is ``"imagefolder"``, ``dataset`` the data set's name (PATH's last
part unless given) and ``fingerprint`` the sha256 of the class names, the relative paths and the
bytes of every image used, which goes into the feature cache's key: other files, or the same files
changed, are another cache.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ..validation import choice, positive_int
from .data import SPLITS, CifarDataError, CifarSplit
from .names import IMAGEFOLDER

#: the file endings torchvision's ImageFolder accepts (lower case)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def dataset_name(path, name: str | None = None) -> str:
    """The data set's name: ``name`` if given, else the folder's last part; it must be 1-64 letters,
    digits, '.', '_' or '-' (it goes into cache folder and results file names)."""
    name = Path(path).resolve().name if name is None else name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"data set name {name!r} must be 1-64 letters, digits, '.', '_' or '-' starting "
                         "with a letter or digit; pass --data-name")
    if name.lower() in ("cifar100", "cifar-100"):
        raise ValueError(f"data set name {name!r} is reserved for CIFAR-100 read from its own format; "
                         "pass another --data-name")
    return name


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def scan(root, split: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """``(class names, [(file, label), ...])`` of ``root/split`` in the interleaved order (see the
    module's docstring); the class names are those of ``root/train``."""
    choice("split", split, SPLITS)
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    train = root / "train"
    if not (train.is_dir() and (root / "test").is_dir()):
        raise ValueError(f"image folder {root} must hold train/ and test/, each with one sub-folder per "
                         "class (torchvision's ImageFolder layout: PATH/train/<class>/*.png, "
                         "PATH/test/<class>/*.png)")
    classes = tuple(sorted(p.name for p in train.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise ValueError(f"{train} must hold at least two class folders, found {list(classes)}")
    folder = root / split
    here = sorted(p.name for p in folder.iterdir() if p.is_dir())
    unknown = sorted(set(here) - set(classes))
    if unknown:
        raise ValueError(f"{folder} has class folder(s) {unknown} that {train} lacks; the classes are "
                         "those of the training split")
    per_class = [_files(folder / c) if c in here else [] for c in classes]
    if split == "train":
        empty = [c for c, f in zip(classes, per_class) if not f]
        if empty:
            raise ValueError(f"class folder(s) {empty} under {train} hold no image "
                             f"({', '.join(IMG_EXTENSIONS)})")
    items = []
    for i in range(max((len(f) for f in per_class), default=0)):
        items += [(files[i], k) for k, files in enumerate(per_class) if i < len(files)]
    if not items:
        raise ValueError(f"{folder} holds no image ({', '.join(IMG_EXTENSIONS)}) in its class folders")
    return classes, items


def _read_image(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except OSError as exc:
        raise CifarDataError(f"{path} could not be read as an image ({exc})") from exc


def load_image_folder(root, split: str = "train", n: int | None = None, image_size: int | None = None,
                      name: str | None = None) -> CifarSplit:
    """The first ``n`` images (all when None) of ``root/split`` as a :class:`CifarSplit` with
    ``source='imagefolder'``, ``dataset`` = :func:`dataset_name` and a content ``fingerprint``."""
    root = Path(root).expanduser()
    dataset = dataset_name(root, name)
    if n is not None:
        n = positive_int("n", n)
    if image_size is not None:
        image_size = positive_int("image_size", image_size)
    classes, items = scan(root, split)
    items = items[:n] if n is not None else items
    h = hashlib.sha256(json.dumps({"classes": classes, "image_size": image_size}).encode())
    images = []
    for path, label in items:
        payload = path.read_bytes()
        h.update(f"{path.relative_to(root).as_posix()}\0{label}\0{len(payload)}\0".encode())
        h.update(payload)
        img = _read_image(path, image_size)
        if images and img.shape != images[0].shape:
            raise CifarDataError(f"{path} is {img.shape[2]} x {img.shape[1]} pixels, "
                                 f"{items[0][0]} is {images[0].shape[2]} x {images[0].shape[1]}: give an "
                                 "image size (--image-size) to resize all images to one size")
        images.append(img)
    labels = np.array([label for _, label in items], dtype=np.int64)
    return CifarSplit(np.stack(images), labels, labels.copy(), classes, split, IMAGEFOLDER,
                      dataset=dataset, fingerprint=h.hexdigest())


def write_image_folder(root, splits: dict, fmt: str = "png") -> Path:
    """Write ``splits`` ({'train': CifarSplit, 'test': CifarSplit}) in the ImageFolder layout read by
    :func:`load_image_folder`: ``root/<split>/<class name>/<index>.<fmt>`` (``fmt`` ``'png'``:
    lossless, so reading back gives the same pixels; or ``'jpg'``).  Every class of ``class_names``
    gets a folder in ``train``.  Returns ``root``."""
    from PIL import Image

    fmt = choice("fmt", fmt, ("png", "jpg"))
    root = Path(root)
    for split, data in splits.items():
        choice("split", split, SPLITS)
        names = [str(c) for c in data.class_names]
        bad = [c for c in names if not c or "/" in c or "\\" in c or c in (".", "..")]
        if bad:
            raise ValueError(f"class names {bad[:3]} cannot be folder names")
        for c in names if split == "train" else sorted({names[k] for k in data.labels}):
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i, (img, k) in enumerate(zip(data.images, data.labels)):
            Image.fromarray(np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(1, 2, 0))).save(
                root / split / names[k] / f"{i:06d}.{fmt}")
    return root
