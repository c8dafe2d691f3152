"""The package imports its submodules lazily (PEP 562): ``import cvxattn_lib`` and the CIFAR command
line's ``--help`` load only what they need, and ``cal.convex.fit_mlp``, ``dir(cal)`` and ``__all__``
work as before.  Heavy imports are checked in ``sys.modules`` of a fresh interpreter, not by the
clock (issue 13, point 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cvxattn_lib as cal

REPO_ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "cvxpy", "matplotlib", "ipywidgets", "scipy")


def loaded_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; return which of HEAVY and which cvxattn_lib modules it
    loaded, and what it printed before."""
    probe = (f"{code}\nimport json, sys\nprint(json.dumps({{'heavy': [m for m in {HEAVY!r} "
             "if m in sys.modules], 'ours': sorted(m for m in sys.modules if m.startswith('cvxattn_lib'))}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    *printed, last = out.stdout.strip().splitlines()
    return dict(json.loads(last), printed="\n".join(printed))


def test_import_loads_neither_torch_nor_cvxpy():
    got = loaded_after("import cvxattn_lib\nimport cvxattn_lib.cifar")
    assert got["heavy"] == [], f"import cvxattn_lib loaded {got['heavy']}"
    assert set(got["ours"]) <= {"cvxattn_lib", "cvxattn_lib._lazy", "cvxattn_lib.cifar"}, got["ours"]


def test_lazy_names_resolve_as_before():
    assert callable(cal.convex.fit_mlp) and callable(cal.solvers.fit_head) and callable(cal.setup)
    assert cal.SolveError.__module__ == "cvxattn_lib.cvxpy_solve"
    for name in cal.__all__:
        assert getattr(cal, name) is not None, name
    assert set(cal.__all__) <= set(dir(cal))
    assert cal.cifar.train_head is cal.cifar.heads.train_head  # a submodule outside __all__
    for name in cal.cifar.__all__:
        assert getattr(cal.cifar, name) is not None, name
    assert set(cal.cifar.__all__) <= set(dir(cal.cifar))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        cal.no_such_thing  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        cal.cifar.no_such_thing  # noqa: B018


def test_star_import_gives_every_public_name():
    namespace: dict = {}
    exec("from cvxattn_lib import *", namespace)
    assert set(cal.__all__) <= set(namespace)


HELP = ("import runpy, sys\nsys.argv = ['cvxattn-cifar', '--help']\ntry:\n"
        "    runpy.run_module('cvxattn_lib.cifar', run_name='__main__')\nexcept SystemExit:\n    pass")


def test_cifar_help_loads_no_solver_heads_widgets_or_cvxpy():
    got = loaded_after(HELP)
    assert "usage:" in got["printed"]
    assert not {"cvxpy", "matplotlib", "ipywidgets", "scipy"} & set(got["heavy"]), got["heavy"]
    assert not {"cvxattn_lib.widgets", "cvxattn_lib.solvers", "cvxattn_lib.convex",
                "cvxattn_lib.nonconvex", "cvxattn_lib.cifar.explore"} & set(got["ours"]), got["ours"]


def test_cifar_help_loads_no_torch_and_reads_as_plain_text():
    got = loaded_after(HELP)
    assert "torch" not in got["heavy"], "--help imported torch"
    assert "``" not in got["printed"] and ":math:" not in got["printed"], got["printed"]
