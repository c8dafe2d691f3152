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


def targets(Y, n: int, loss: str, name: str = "Y") -> tuple[np.ndarray, int]:
    """Check targets for ``loss`` and return ``(Y, c)``.

    squared: ``Y`` of shape (n, c) or (n,) (taken as c = 1), float.
    cross_entropy: integer labels of shape (n,) in ``0..c-1``; returned as int64 with c = max + 1.
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
    return arr.astype(np.int64), int(arr.max()) + 1


def token_targets(Y, n: int, s: int, loss: str) -> tuple[np.ndarray, int]:
    """Check targets of a token-mixing layer and return ``(Y, c)``.

    squared: token targets (n, s, c), or (n, s) taken as c = 1; cross_entropy: integer labels (n,)
    (see :func:`targets`), the layer's outputs being mean-pooled over tokens.
    """
    if choice("loss", loss, LOSSES) == "cross_entropy":
        return targets(Y, n, loss)
    Y = as_float_array("Y", Y, (2, 3))
    Y = Y[:, :, None] if Y.ndim == 2 else Y
    if Y.shape[:2] != (n, s):
        raise ValueError(f"Y must have shape ({n}, {s}, c) (token-level targets matching X's "
                         f"samples and tokens), got {Y.shape}")
    return Y, Y.shape[2]
