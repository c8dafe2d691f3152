"""Packaging and repository hygiene.

- pyproject.toml and environment.yml list the same packages (names mapped: pip ``torch`` is conda
  ``pytorch``; ``python`` and ``pip`` are conda-only) with the same lower bounds;
- scripts/constraints-ci.txt pins every dependency, inside the pyproject ranges;
- notebooks are stored stripped and open with the house title cell;
- .ci/run runs scripts/test.sh, and the README lists the commands and every notebook;
- scripts/test.sh installs Chromium only when asked (CVXATTN_INSTALL_BROWSER=1, set by .ci/run), and
  has a quick lane (--quick) and parallel workers;
- a LICENSE matching the declared licence, a committed data/ folder, the console script, every
  imported package declared, the Python floor that CI tests, a data root outside site-packages.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

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
    assert "export CVXATTN_INSTALL_BROWSER=1" in lines, "CI must ask test.sh to install Chromium"


def test_readme_names_the_commands_and_every_notebook():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for command in ["bash scripts/main.sh", "bash scripts/test.sh"]:
        assert command in readme, f"README lacks {command!r}"
    missing = [p.stem for p in NOTEBOOKS if p.stem not in readme]
    assert not missing, f"README's notebook table lacks {missing}"


# -- scripts/test.sh: Chromium only on request, the quick lane, parallel workers -------------------
def run_test_script(tmp_path, *args, env=None):
    """Run a copy of scripts/test.sh in a scratch repository whose ensure_env.sh, python, id and
    apt-get are stubs that log their arguments; return (exit code, output, {stub: log})."""
    repo, stubs, logs = tmp_path / "repo", tmp_path / "bin", tmp_path / "logs"
    for d in (repo / "scripts", repo / ".venv" / "bin", stubs, logs):
        d.mkdir(parents=True)
    (repo / "scripts" / "test.sh").write_text((REPO_ROOT / "scripts" / "test.sh").read_text())
    (repo / "scripts" / "ensure_env.sh").write_text("exit 0\n")

    def stub(path, name, body="exit 0"):
        path.write_text(f'#!/bin/sh\necho "$@" >> {logs / name}\n{body}\n')
        path.chmod(0o755)

    stub(repo / ".venv" / "bin" / "python", "python")
    stub(stubs / "apt-get", "apt-get")
    stub(stubs / "id", "id", "echo 0")  # pretend to be root
    full_env = {"PATH": f"{stubs}:{os.environ['PATH']}", "HOME": str(tmp_path),
                "CVXATTN_CHROMIUM": str(tmp_path / "no-chromium"), **(env or {})}
    out = subprocess.run(["bash", str(repo / "scripts" / "test.sh"), *args], capture_output=True,
                         text=True, env=full_env, timeout=60)
    read = {p.name: p.read_text() for p in logs.iterdir()}
    return out.returncode, out.stdout + out.stderr, read


def test_test_script_installs_chromium_only_when_asked(tmp_path):
    rc, output, logs = run_test_script(tmp_path / "a")
    assert rc == 0, output
    assert "apt-get" not in logs, "test.sh ran apt-get without CVXATTN_INSTALL_BROWSER=1"
    assert "CVXATTN_INSTALL_BROWSER=1" in output  # the warning says how to ask for it
    rc, output, logs = run_test_script(tmp_path / "b", env={"CVXATTN_INSTALL_BROWSER": "1"})
    assert "install -y chromium" in logs.get("apt-get", ""), output


def test_test_script_quick_lane_and_workers(tmp_path):
    rc, output, logs = run_test_script(tmp_path / "quick", "--quick", "-k", "x",
                                       env={"CVXATTN_INSTALL_BROWSER": "1"})
    pytest_call = [ln for ln in logs["python"].splitlines() if ln.startswith("-m pytest")]
    assert rc == 0 and pytest_call, output
    assert "-m not slow and not notebook and not browser -k x" in pytest_call[0]
    assert "-n" not in pytest_call[0].split() and "apt-get" not in logs
    rc, output, logs = run_test_script(tmp_path / "full")
    pytest_call = [ln for ln in logs["python"].splitlines() if ln.startswith("-m pytest")]
    assert "-n 2 --dist loadgroup" in pytest_call[0], pytest_call
    rc, output, logs = run_test_script(tmp_path / "serial", env={"CVXATTN_TEST_WORKERS": "0"})
    pytest_call = [ln for ln in logs["python"].splitlines() if ln.startswith("-m pytest")]
    assert "-n" not in pytest_call[0].split(), pytest_call


def test_readme_documents_the_quick_lane_and_the_browser_opt_in():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for text in ["bash scripts/test.sh --quick", "CVXATTN_INSTALL_BROWSER=1", "CVXATTN_TEST_WORKERS"]:
        assert text in quick_start, f"README's Quick start does not mention {text!r}"


# -- licence, data folder, console script, declared imports, Python floor ----------------------
def project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def test_license_file_matches_the_declared_licence():
    declared = project()["license"]["text"]
    text = (REPO_ROOT / "LICENSE").read_text()
    assert declared == "MIT" and text.startswith("MIT License")
    assert "Copyright (c) 2026 the cvxattn authors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_data_folder_is_committed_with_a_readme_and_caches_are_ignored():
    readme = (REPO_ROOT / "data" / "README.md").read_text()
    for part in ["cifar-100-python/", "cache/", "results/", "CVXATTN_DATA", "huggingface"]:
        assert part in readme, f"data/README.md does not explain {part!r}"
    ignored = (REPO_ROOT / ".gitignore").read_text().split()
    assert {"data/cache/", "data/cifar-100-python/", "data/*.tar.gz"} <= set(ignored)


def test_console_script_points_at_the_cli_entry_function(tmp_path):
    scripts = project()["scripts"]
    module, func = scripts["cvxattn-cifar"].split(":")
    assert callable(getattr(importlib.import_module(module), func))
    exe = Path(sys.executable).parent / "cvxattn-cifar"
    if not exe.exists():
        pytest.skip("the console script is installed by pip install -e . (scripts/ensure_env.sh)")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "extract" in out.stdout and "train" in out.stdout, out.stderr


LOCAL = {"cvxattn_lib", "browser_helpers", "convex_heads", "execute_notebooks", "conftest"}


def python_source(file: Path) -> str:
    """A .py file's text, or a notebook's code cells (IPython magics and shell lines dropped)."""
    if file.suffix != ".ipynb":
        return file.read_text(encoding="utf-8")
    cells = json.loads(file.read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c["cell_type"] == "code"]
    return "\n".join(ln for ln in "\n".join(code).splitlines() if not ln.lstrip().startswith(("%", "!")))


def imported_top_levels(paths) -> dict[str, set[str]]:
    """Top-level names of every absolute import in the .py files (and notebooks) under ``paths``
    -> the files."""
    found: dict[str, set[str]] = {}
    for path in paths:
        files = sorted([*path.rglob("*.py"), *path.glob("*.ipynb")]) if path.is_dir() else [path]
        for file in files:
            tree = ast.parse(python_source(file))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(file.relative_to(REPO_ROOT)))
    return found


def third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    """The imports that are neither standard library nor this repository's, as distributions."""
    dists = importlib.metadata.packages_distributions()
    out: dict[str, set[str]] = {}
    for name, files in found.items():
        if name in sys.stdlib_module_names or name in LOCAL or name.startswith("bench_"):
            continue
        assert name in dists, f"{name} (imported in {sorted(files)}) is not installed"
        for dist in dists[name]:
            out.setdefault(normalize(dist), set()).update(files)
    return out


def test_every_imported_package_is_declared():
    proj = project()
    core = {parse_requirement(r)[0] for r in proj["dependencies"]}
    extras = {k: {parse_requirement(r)[0] for r in v} for k, v in proj["optional-dependencies"].items()}
    library = third_party(imported_top_levels([REPO_ROOT / "cvxattn_lib"]))
    cifar_files = {f for fs in library.values() for f in fs if f.startswith("cvxattn_lib/cifar/")}
    for dist, files in library.items():
        allowed = core | (extras["cifar"] if files <= cifar_files else set())
        assert dist in allowed, f"the library imports {dist} ({sorted(files)}) but pyproject does not " \
            "list it in dependencies" + (" or the cifar extra" if files <= cifar_files else "")
    everything = core.union(*extras.values())
    rest = third_party(imported_top_levels([REPO_ROOT / d for d in ("scripts", "tests", "benchmarks",
                                                                    "notebooks")]))
    missing = {d: sorted(f) for d, f in rest.items() if d not in everything}
    assert not missing, f"imported by scripts/tests/benchmarks/notebooks but not declared: {missing}"
    # JupyterLab and the kernel are for reading the notebooks: an extra, not a library dependency
    assert {"jupyterlab", "ipykernel"} <= extras["lab"] and not {"jupyterlab", "ipykernel"} & core
    assert not {"jupyterlab", "ipykernel"} & set(library)


def test_python_floor_is_the_tested_one():
    floor = re.fullmatch(r">=\s*(\d+\.\d+)", project()["requires-python"]).group(1)
    assert f"python={floor}" in environment_yml()["dependencies"]
    ensure = (REPO_ROOT / "scripts" / "ensure_env.sh").read_text()
    assert f"sys.version_info < ({floor.replace('.', ', ')})" in ensure
    assert f"(Python {floor}, CPU, Linux)" in (REPO_ROOT / "scripts" / "constraints-ci.txt").read_text()
    ruff = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["target-version"]
    assert ruff == "py" + floor.replace(".", "")


def test_torch_floor_has_what_the_library_uses():
    """torch.OutOfMemoryError (cifar/backbone.py) exists from torch 2.5 on."""
    floor = pyproject_requirements()["torch"]
    uses = any("torch.OutOfMemoryError" in f.read_text() for f in (REPO_ROOT / "cvxattn_lib").rglob("*.py"))
    assert not uses or version_tuple(floor.removeprefix(">=")) >= (2, 5), floor


def test_data_root_is_never_inside_site_packages(tmp_path, monkeypatch):
    from cvxattn_lib import runtime

    monkeypatch.delenv(runtime.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "cvxattn_lib").mkdir(parents=True)
    (site / "pyproject.toml").write_text("")  # a stray file a package left there: still site-packages
    monkeypatch.setattr(runtime, "_REPO_ROOT", site)
    assert runtime.data_root() == tmp_path / "xdg" / "cvxattn"
    (site / "pyproject.toml").unlink()
    assert runtime.data_root() == tmp_path / "xdg" / "cvxattn"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.setattr(runtime, "_REPO_ROOT", checkout)
    assert runtime.data_root() == checkout / "data"
    monkeypatch.setenv(runtime.DATA_ENV, str(tmp_path / "mine"))
    assert runtime.data_root() == tmp_path / "mine"
