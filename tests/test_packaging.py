"""Packaging and repository hygiene.

- pyproject.toml and environment.yml list the same packages (names mapped: pip ``torch`` is conda
  ``pytorch``; ``python`` and ``pip`` are conda-only) with the same lower bounds;
- scripts/constraints-ci.txt pins every dependency, inside the pyproject ranges;
- notebooks are stored stripped and open with the house title cell;
- .ci/run runs scripts/test.sh, and the README lists the commands and every notebook.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="Python 3.10 needs tomli to read pyproject")

REPO_ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge name -> PyPI name, where they differ
CONDA_ONLY = {"python", "pip"}  # listed in environment.yml only
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;#]*)")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(spec: str) -> tuple[str, str]:
    """``'numpy >= 1.24'`` -> ``('numpy', '>=1.24')`` (pip and simple conda specs alike)."""
    m = _REQ.match(spec)
    assert m, f"cannot parse requirement {spec!r}"
    return normalize(m.group(1)), re.sub(r"\s+", "", m.group(2))


def version_tuple(v: str) -> tuple[int, ...]:
    """``'2.14.1'`` -> ``(2, 14, 1)``; stops at the first non-numeric part."""
    out = []
    for part in v.split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
    return tuple(out)


def pyproject_requirements() -> dict[str, str]:
    """Dependencies plus every extra, as ``{name: specifier}``."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return dict(parse_requirement(r) for r in reqs)


def environment_yml() -> dict:
    """environment.yml, parsed."""
    return yaml.safe_load((REPO_ROOT / "environment.yml").read_text())


def conda_requirements() -> dict[str, str]:
    """environment.yml's conda packages under their pip names, without python and pip."""
    out = {}
    for dep in environment_yml()["dependencies"]:
        if isinstance(dep, str):
            name, spec = parse_requirement(dep)
            if name not in CONDA_ONLY:
                out[CONDA_TO_PIP.get(name, name)] = spec
    return out


def constraints() -> dict[str, str]:
    """scripts/constraints-ci.txt as ``{name: version}``; every line must be an exact pin."""
    pins = {}
    for line in (REPO_ROOT / "scripts" / "constraints-ci.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9._-]+)==([0-9][0-9A-Za-z.+!-]*)", line)
            assert m, f"constraints-ci.txt: {line!r} is not an exact pin name==version"
            pins[normalize(m.group(1))] = m.group(2)
    return pins


def test_environment_yml_lists_the_pyproject_packages():
    pip, conda = pyproject_requirements(), conda_requirements()
    assert not set(pip) - set(conda), f"in pyproject, missing from environment.yml: " \
        f"{sorted(set(pip) - set(conda))} (conda name map: {CONDA_TO_PIP})"
    assert not set(conda) - set(pip), f"in environment.yml, missing from pyproject: " \
        f"{sorted(set(conda) - set(pip))} (conda name map: {CONDA_TO_PIP})"
    differ = {n: (pip[n], conda[n]) for n in pip if pip[n] != conda[n]}
    assert not differ, f"lower bounds differ (pyproject, environment.yml): {differ}"


def test_environment_yml_is_conda_forge_only():
    env = environment_yml()
    assert env["name"] == "cvxattn"
    assert env["channels"] == ["conda-forge", "nodefaults"]
    deps = env["dependencies"]
    assert "python=3.11" in deps
    for dep in deps:
        if isinstance(dep, dict):  # a pip section may only install the project itself
            assert set(dep) == {"pip"} and dep["pip"] == ["-e ."], dep


def test_ci_constraints_pin_every_dependency_within_range():
    pins, reqs = constraints(), pyproject_requirements()
    assert not set(reqs) - set(pins), f"not pinned in constraints-ci.txt: {sorted(set(reqs) - set(pins))}"
    for name, spec in reqs.items():
        for bound in re.findall(r">=([0-9][0-9.]*)", spec):
            assert version_tuple(pins[name]) >= version_tuple(bound), \
                f"{name}=={pins[name]} in constraints-ci.txt is below pyproject's {spec}"


@pytest.mark.skipif(Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve(),
                    reason="checks the repository's .venv only (created by scripts/ensure_env.sh)")
def test_venv_has_the_ci_set():
    wrong = {}
    for name, pin in constraints().items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = "missing"
        if have != pin:
            wrong[name] = f"installed {have}, pinned {pin}"
    assert not wrong, f".venv differs from scripts/constraints-ci.txt: {wrong}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped_and_titled(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), \
        f"{path.name}: name notebooks NN_slug.ipynb (lower case, underscores)"
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert "widgets" not in nb["metadata"], f"{path.name}: stored widget state; strip it"
    kernel = nb["metadata"].get("kernelspec", {}).get("name", "python3")
    assert kernel == "python3", f"{path.name}: kernelspec {kernel!r}, expected python3"
    for i, cell in enumerate(nb["cells"], 1):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, \
                f"{path.name}: cell {i} has stored outputs or an execution count; strip them " \
                "(Kernel > Restart Kernel and Clear Outputs of All Cells, then save)"
    first = nb["cells"][0]
    title = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be the title"
    nn = path.name[:2]
    assert re.match(rf"# {nn} · \S", title), \
        f"{path.name}: title cell must start '# {nn} · Title', got {title.splitlines()[0]!r}"
    for label in ["**You will learn**", "**Needs**", "**Runtime**"]:
        assert label in title, f"{path.name}: title cell lacks {label}"


def test_ci_entry_point_runs_the_test_script():
    run = REPO_ROOT / ".ci" / "run"
    assert os.access(run, os.X_OK), ".ci/run must be executable"
    lines = [ln.strip() for ln in run.read_text().splitlines() if ln.strip()]
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert lines[-1] == "exec bash scripts/test.sh"


def test_readme_names_the_commands_and_every_notebook():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for command in ["bash scripts/main.sh", "bash scripts/test.sh"]:
        assert command in readme, f"README lacks {command!r}"
    missing = [p.stem for p in NOTEBOOKS if p.stem not in readme]
    assert not missing, f"README's notebook table lacks {missing}"
