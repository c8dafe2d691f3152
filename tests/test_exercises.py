import re
from pathlib import Path

import pytest

import cvxattn_lib as cal

SOLUTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "solutions"


def documented_answers():
    """(key, answer) pairs from the worked solutions.

    A number exercise's item reads '**`KEY`** ... Answer: `VALUE`'; an implement-it exercise's item
    holds a fenced python block that defines ``answer`` (the worked implementation).
    """
    pairs = []
    for path in sorted(SOLUTIONS.glob("*.md")):
        for item in re.split(r"\n(?=\d+\. )", path.read_text()):
            key = re.search(r"\*\*`([\w.]+)`\*\*", item)
            if not key:
                continue
            key = key.group(1)
            code = re.search(r"```python\n(.*?)```", item, re.S)
            if key in cal.exercises.EXERCISES and cal.exercises.EXERCISES[key].kind == "function":
                assert code, f"{path.name}: item {key} has no ```python block defining `answer`"
                pairs.append((key, code.group(1)))
                continue
            answer = re.search(r"Answer: `(-?\d+(?:\.\d+)?(?:e-?\d+)?)`", item)
            assert answer, f"{path.name}: item {key} has no 'Answer: `VALUE`'"
            pairs.append((key, float(answer.group(1))))
    return pairs


def test_every_exercise_has_a_worked_solution():
    assert [k for k, _ in documented_answers()] and \
        {k for k, _ in documented_answers()} == set(cal.exercises.EXERCISES)


@pytest.mark.parametrize("key,answer", documented_answers(), ids=[k for k, _ in documented_answers()])
def test_worked_solutions_pass_the_checker(key, answer, capsys):
    if isinstance(answer, str):  # an implement-it exercise: run the worked code, then check it
        namespace: dict = {}
        exec(compile(answer, f"<solution {key}>", "exec"), namespace)
        assert "answer" in namespace, f"the worked solution of {key} defines no `answer`"
        assert cal.exercises.check(key, namespace["answer"])
        capsys.readouterr()
        assert not cal.exercises.check(key, lambda *args, **kwargs: 0.0)  # a wrong function fails
        assert not cal.exercises.check(key, 3.0)  # so does a number where a function is due
    else:
        assert cal.exercises.check(key, answer)
        assert not cal.exercises.check(key, answer + 1)
    assert not cal.exercises.check(key, None)
    assert "not attempted" in capsys.readouterr().out


def test_every_notebook_has_three_exercises_beyond_recall():
    """Issue 10: each notebook carries at least three exercises that ask to derive, implement or
    predict-then-test. They are tagged in the notebook's exercise module's ``DEEP`` tuple."""
    import importlib

    for nb in sorted(p.name[:2] for p in (SOLUTIONS.parent).glob("[0-9][0-9]_*.ipynb")):
        module = importlib.import_module(f"cvxattn_lib.exercises.nb{nb}")
        deep = getattr(module, "DEEP", ())
        assert len(deep) >= 3, f"notebook {nb}: {len(deep)} derive/implement/predict exercises, want >= 3"
        assert set(deep) <= set(module.EXERCISES), f"notebook {nb}: DEEP names unknown keys"
        text = next(SOLUTIONS.parent.glob(f"{nb}_*.ipynb")).read_text(encoding="utf-8")
        absent = [k for k in module.EXERCISES if f'\\"{k}\\"' not in text]
        assert not absent, f"notebook {nb} never asks exercises {absent} (no check cell names them)"


def test_a_failing_function_is_reported_not_raised(capsys):
    function_keys = [k for k, ex in cal.exercises.EXERCISES.items() if ex.kind == "function"]
    if not function_keys:
        pytest.skip("no implement-it exercise defined")

    def broken(*args, **kwargs):
        raise ValueError("boom")

    assert not cal.exercises.check(function_keys[0], broken)
    assert "ValueError: boom" in capsys.readouterr().out


def test_unknown_exercise_is_named():
    with pytest.raises(KeyError, match="no.such"):
        cal.exercises.check("no.such", 1)
