"""Self-checking exercises: a notebook calls ``check(key, answer)``.

Right answers are computed from the library when asked (never stored). Each notebook's exercises
live in their own module (``nb00`` for notebook 00, ``nb01`` for notebook 01, ...); worked solutions live in
``notebooks/solutions/``. An answer is a number, or, for an implement-it exercise, a function that
``check`` runs against the library on small problems.
"""

from __future__ import annotations

from . import nb00, nb01, nb02, nb03, nb04, nb05, nb06
from ._base import Exercise, close, implement, number

EXERCISES: dict[str, Exercise] = {}
for _module in (nb00, nb01, nb02, nb03, nb04, nb05, nb06):
    _overlap = EXERCISES.keys() & _module.EXERCISES.keys()
    if _overlap:
        raise RuntimeError(f"exercise keys defined twice: {sorted(_overlap)}")
    EXERCISES.update(_module.EXERCISES)


def check(key: str, answer) -> bool:
    """Print whether ``answer`` to exercise ``key`` is right (``None``: not attempted yet)."""
    import numpy as np

    if key not in EXERCISES:
        raise KeyError(f"unknown exercise {key!r}; known: {', '.join(EXERCISES)}")
    ex = EXERCISES[key]
    if answer is None:
        print(f"[{key}] not attempted yet: replace None with your answer. Hint: {ex.hint}")
        return False
    if ex.kind == "function":
        if not callable(answer):
            print(f"[{key}] expected a function, got {type(answer).__name__}. Hint: {ex.hint}")
            return False
        try:
            ok, message = ex.test(answer)
        except Exception as err:  # the reader's code failed: say how, do not crash the notebook
            ok, message = False, f"your function raised {type(err).__name__}: {err}"
        print(f"[{key}] " + (f"correct: {message}." if ok else f"not quite: {message}. Hint: {ex.hint}"))
        return bool(ok)
    expected = ex.expected()
    try:
        ok = bool(np.allclose(float(answer), float(expected), rtol=ex.rtol, atol=0))
    except (TypeError, ValueError):
        ok = answer == expected
    print(f"[{key}] " + ("correct." if ok else f"not quite. Hint: {ex.hint}"))
    return ok


__all__ = ["EXERCISES", "Exercise", "check", "close", "implement", "number"]
