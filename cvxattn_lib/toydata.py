"""Small synthetic data sets for the toy problems (every draw takes a seed)."""

from __future__ import annotations

import numpy as np

from .validation import choice, positive_int


def with_bias(P: np.ndarray) -> np.ndarray:
    """Append a column of ones, so the first layer's last weight acts as a bias."""
    P = np.asarray(P, dtype=np.float64)
    return np.concatenate([P, np.ones((P.shape[0], 1))], axis=1)


def two_class_2d(n: int = 40, kind: str = "spiral", noise: float = 0.1, seed: int = 0,
                 bias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two classes in the plane with targets y in {-1, +1} (n,).

    ``kind``: ``'spiral'`` (two interleaved arms), ``'xor'`` (four Gaussian blobs) or ``'moons'``.
    Returns ``(X, y)`` with X (n, 3) = (x1, x2, 1) when ``bias`` else (n, 2).
    """
    n = positive_int("n", n, minimum=2)
    choice("kind", kind, ("spiral", "xor", "moons"))
    rng = np.random.default_rng(seed)
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    if kind == "spiral":
        t = np.sqrt(rng.uniform(0.05, 1.0, n)) * 2.2 * np.pi
        r = t / (2.2 * np.pi)
        P = np.stack([r * np.cos(t), r * np.sin(t)], axis=1) * y[:, None]
    elif kind == "xor":
        centres = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=float) * 0.6
        k = rng.integers(0, 2, n)
        P = centres[np.where(y > 0, k, k + 2)]
    else:
        t = rng.uniform(0, np.pi, n)
        P = np.where(y[:, None] > 0, np.stack([np.cos(t), np.sin(t)], 1),
                     np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)) - [0.5, 0.25]
    P = P + noise * rng.standard_normal((n, 2))
    return (with_bias(P) if bias else P), y


def random_regression(n: int, d: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """X (n, d) and Y (n, c) with i.i.d. standard normal entries."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, c))


def attention_teacher(n: int = 12, s: int = 4, d: int = 3, c: int = 2, heads: int = 2,
                      noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Token targets from a random linear-attention teacher with ``heads`` heads, plus noise.

    X (n, s, d) standard normal / sqrt(d); Y (n, s, c) = sum_j X W1_j X^T X W2_j + noise * N(0, 1).
    Returns ``(X, Y, teacher)`` with the teacher's ``W1`` (heads, d, d) and ``W2`` (heads, d, c).
    """
    n, s, d, c, heads = (positive_int(k, v) for k, v in
                         [("n", n), ("s", s), ("d", d), ("c", c), ("heads", heads)])
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, s, d)) / np.sqrt(d)
    W1 = rng.standard_normal((heads, d, d)) / np.sqrt(d)
    W2 = rng.standard_normal((heads, d, c)) / np.sqrt(d)
    Y = np.einsum("nta,jak,nuk,nul,jlc->ntc", X, W1, X, X, W2)
    return X, Y + noise * rng.standard_normal(Y.shape), {"W1": W1, "W2": W2}
