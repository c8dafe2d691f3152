"""Input checks that raise errors naming the argument and what was expected."""

from __future__ import annotations

import numbers

import numpy as np

LOSSES = ("squared", "cross_entropy")


def as_float_array(name: str, value, ndim: int | tuple[int, ...], *, shape=None) -> np.ndarray:
    """Return ``value`` as a finite float64 array with ``ndim`` dimensions.

    ``shape`` may fix some dimensions (``None`` entries are free).  Raises ``TypeError`` for
    non-numeric input and ``ValueError`` for wrong dimensions, shapes, NaN or inf.
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - numpy raises for ragged input
        raise TypeError(f"{name} must be array-like of numbers: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in ndims:
        want = " or ".join(str(k) for k in ndims)
        raise ValueError(f"{name} must be a {want}-D array, got shape {arr.shape}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(arr.shape, shape)):
            if want is not None and got != want:
                raise ValueError(f"{name} must have shape {_fmt(shape)}, got {arr.shape} "
                                 f"(axis {axis} is {got}, expected {want})")
    if arr.ndim and arr.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise ValueError(f"{name} contains {bad}; clean or impute the data first")
    return arr


def _fmt(shape) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"


def positive_scalar(name: str, value) -> float:
    """A finite float > 0 (for regularisation strengths such as ``beta``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def positive_int(name: str, value, minimum: int = 1) -> int:
    """An integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def seed_value(name: str, value) -> int:
    """A seed: an integer in [0, 2**32 - 1] (what numpy and torch accept)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not 0 <= value < 2**32:
        raise ValueError(f"{name} must be an integer in [0, 2**32 - 1], got {value!r}")
    return int(value)


def choice(name: str, value, options) -> str:
    """``value`` if it is one of ``options``, else a ``ValueError`` listing them."""
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def targets(Y, n: int, loss: str, name: str = "Y", classes: int | None = None) -> tuple[np.ndarray, int]:
    """Check targets for ``loss`` and return ``(Y, c)``.

    squared: ``Y`` of shape (n, c) or (n,) (taken as c = 1), float.
    cross_entropy: integer labels of shape (n,) in ``0..c-1``; returned as int64 with c = ``classes``
    when given (the data set's class count: labels must lie below it, and classes absent from
    ``Y`` still get an output), else c = max + 1.
    """
    choice("loss", loss, LOSSES)
    if loss == "squared":
        Y = as_float_array(name, Y, (1, 2))
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.shape[0] != n:
            raise ValueError(f"{name} must have {n} rows (one per sample of X), got shape {Y.shape}")
        return Y, Y.shape[1]
    arr = np.asarray(Y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be integer labels of shape ({n},) for loss='cross_entropy', "
                         f"got shape {arr.shape}")
    if n == 0:
        raise ValueError(f"{name} must have at least one label, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"{name} must hold integer class labels for loss='cross_entropy', "
                            f"got dtype {arr.dtype}")
        bad = arr[~np.isfinite(arr) | (arr != np.round(arr))]
        if bad.size:
            raise TypeError(f"{name} must hold integer class labels for loss='cross_entropy'; "
                            f"got non-integer values such as {bad[0]!r}")
        arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"{name} labels must be >= 0, got minimum {arr.min()}")
    if classes is not None:
        classes = positive_int("classes", classes)
        if arr.max() >= classes:
            raise ValueError(f"{name} labels must be < classes={classes}, got maximum {arr.max()}")
        return arr.astype(np.int64), classes
    return arr.astype(np.int64), int(arr.max()) + 1


def token_targets(Y, n: int, s: int, loss: str, classes: int | None = None) -> tuple[np.ndarray, int]:
    """Check targets of a token-mixing layer and return ``(Y, c)``.

    squared: token targets (n, s, c), or (n, s) taken as c = 1; cross_entropy: integer labels (n,)
    (see :func:`targets`, also for ``classes``), the layer's outputs being mean-pooled over tokens.
    """
    if choice("loss", loss, LOSSES) == "cross_entropy":
        return targets(Y, n, loss, classes=classes)
    Y = as_float_array("Y", Y, (2, 3))
    Y = Y[:, :, None] if Y.ndim == 2 else Y
    if Y.shape[:2] != (n, s):
        raise ValueError(f"Y must have shape ({n}, {s}, c) (token-level targets matching X's "
                         f"samples and tokens), got {Y.shape}")
    return Y, Y.shape[2]


def nonnegative_scalar(name: str, value) -> float:
    """A finite float >= 0 (for tolerances such as ``tol``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number >= 0, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def in_interval(name: str, value, low: float, high: float, *, closed_high: bool = False) -> float:
    """A real number in (low, high), or (low, high] with ``closed_high``."""
    right = "]" if closed_high else ")"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in ({low:g}, {high:g}{right}, got {value!r}")
    value = float(value)
    if not (low < value < high or (closed_high and value == high)):
        raise ValueError(f"{name} must be in ({low:g}, {high:g}{right}, got {value!r}")
    return value


def known_options(where: str, options: dict, allowed) -> dict:
    """``options`` unchanged if every key is in ``allowed``, else a ``TypeError`` naming the
    unknown ones and listing the valid ones (so a typo is not silently ignored)."""
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise TypeError(f"{where} got unknown option(s) {', '.join(map(repr, bad))}; valid options: "
                        f"{', '.join(sorted(allowed))}")
    return options


def real_features(name: str, X, ndim: int, chunk: int = 1024):
    """Check features that may be large or memory-mapped (n, ...), without a float64 copy.

    Real numeric dtype, ``ndim`` dimensions, at least one row, every entry finite (read ``chunk``
    rows at a time).  Returns ``X`` itself.  ``TypeError`` for complex or non-numeric dtypes,
    ``ValueError`` for the rest.
    """
    shape = tuple(getattr(X, "shape", np.shape(X)))
    if len(shape) != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} must have at least one row (sample), got shape {shape}")
    dtype = np.asarray(X[:1]).dtype
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got complex dtype {dtype}")
    if dtype.kind not in "biuf":  # bool, (unsigned) integer, float
        raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")
    for start in range(0, shape[0], chunk):
        block = np.asarray(X[start:start + chunk])
        finite = np.isfinite(block)
        if not finite.all():
            row = start + int(np.argwhere(~finite)[0][0])
            bad = "NaN" if np.isnan(block).any() else "inf"
            raise ValueError(f"{name} contains {bad} (first in sample {row}); clean or impute the "
                             "features first")
    return X


def class_labels(name: str, y, n: int, classes: int) -> np.ndarray:
    """Integer class labels of shape (n,) in ``0..classes-1``, as int64."""
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"{name} must hold one label per sample, shape ({n},), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) \
                or np.any(arr != np.round(arr)):
            raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= classes):
        bad = arr[(arr < 0) | (arr >= classes)][0]
        raise ValueError(f"{name} must hold labels in [0, classes) = [0, {classes}), got {bad}")
    return arr


class TooLargeError(ValueError, MemoryError):
    """The arrays a problem needs cannot fit in memory; raised before anything is allocated."""


def total_memory(device=None) -> int:
    """Bytes of memory of ``device``: the GPU's for a CUDA device, else the machine's RAM."""
    import os

    if device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2**62


def format_bytes(nbytes: float) -> str:
    """``31_000_000_000_000`` -> ``'28.2 TiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes:.1f} EiB"  # pragma: no cover - unreachable


def check_fits_in_memory(where: str, arrays: dict, available: int, hint: str = "") -> int:
    """Refuse, with a :class:`TooLargeError` naming the sizes, when ``arrays`` (``{description:
    bytes}``, the arrays a computation must hold at once) add up to more than ``available`` bytes.
    Returns the total."""
    total = int(sum(arrays.values()))
    if total > available:
        parts = "; ".join(f"{what}: {format_bytes(b)}" for what, b in arrays.items() if b)
        raise TooLargeError(f"{where} needs at least {format_bytes(total)} ({parts}), more than the "
                            f"{format_bytes(available)} of memory here; {hint or 'use smaller sizes'}")
    return total
