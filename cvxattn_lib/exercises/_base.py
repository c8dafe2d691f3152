"""The two kinds of exercise a notebook can check: a number, or a function the reader implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np


@dataclass(frozen=True)
class Exercise:
    """One exercise.

    ``kind="number"``: ``expected()`` computes the right answer from the library (never stored);
    an answer is right when it agrees to ``rtol``.
    ``kind="function"``: the reader implements a function; ``test(fn)`` runs it on problems the
    library can solve itself and returns ``(ok, message)``.
    """

    hint: str
    expected: Callable[[], object] | None = None
    test: Callable[[Callable], tuple[bool, str]] | None = None
    rtol: float = 1e-6
    kind: Literal["number", "function"] = "number"

    def __post_init__(self):
        if self.kind == "number" and self.expected is None:
            raise ValueError("a number exercise needs expected=")
        if self.kind == "function" and self.test is None:
            raise ValueError("a function exercise needs test=")


def number(expected: Callable[[], object], hint: str, rtol: float = 1e-6) -> Exercise:
    """An exercise whose answer is a number computed by ``expected()``."""
    return Exercise(hint=hint, expected=expected, rtol=rtol, kind="number")


def implement(test: Callable[[Callable], tuple[bool, str]], hint: str) -> Exercise:
    """An exercise whose answer is a function, judged by ``test(fn) -> (ok, message)``."""
    return Exercise(hint=hint, test=test, kind="function")


def close(got, want, rtol: float = 1e-8, atol: float = 1e-10, what: str = "result") -> tuple[bool, str]:
    """``(ok, message)`` for a ``test``: arrays ``got`` and ``want`` agree (shape and values)."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        return False, f"{what} has shape {got.shape}, expected {want.shape}"
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        return False, f"{what} differs from the library's by up to {err:.2e}"
    return True, f"{what} agrees with the library's to {err:.1e}"
