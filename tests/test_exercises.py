import re
from pathlib import Path

import pytest

import cvxattn_lib as cal

SOLUTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "solutions"


def documented_answers():
    """(key, answer) pairs from the worked solutions: items '**`KEY`** ... Answer: `VALUE`'."""
    pairs = []
    for path in SOLUTIONS.glob("*.md"):
        for item in re.split(r"\n(?=\d+\. )", path.read_text()):
            key = re.search(r"\*\*`([\w.]+)`\*\*", item)
            if key:
                answer = re.search(r"Answer: `(-?\d+(?:\.\d+)?)`", item)
                assert answer, f"{path.name}: item {key.group(1)} has no 'Answer: `VALUE`'"
                pairs.append((key.group(1), float(answer.group(1))))
    return pairs


def test_every_exercise_has_a_worked_solution():
    assert {k for k, _ in documented_answers()} == set(cal.exercises.EXERCISES)


@pytest.mark.parametrize("key,answer", documented_answers())
def test_worked_solutions_pass_the_checker(key, answer, capsys):
    assert cal.exercises.check(key, answer)
    assert not cal.exercises.check(key, answer + 1)
    assert not cal.exercises.check(key, None)
    assert "not attempted" in capsys.readouterr().out


def test_unknown_exercise_is_named():
    with pytest.raises(KeyError, match="no.such"):
        cal.exercises.check("no.such", 1)
