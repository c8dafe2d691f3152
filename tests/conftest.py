"""Shared fixtures: the notebook runner from scripts/, and JupyterLab + Chromium for browser tests."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (scripts/test.sh runs 2 workers), give each worker, and the notebook
    kernels and JupyterLab it starts, its share of the CPU cores instead of letting every process
    start one thread per core (which oversubscribes a 2-core machine).  Read by torch and the BLAS
    libraries when they load; a value the user set is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


_share_the_cores_between_workers()


def load_execute_notebooks():
    """Import scripts/execute_notebooks.py (a script, not part of the package) by its path."""
    return load_script("execute_notebooks")


def load_script(name: str):
    """Import scripts/NAME.py (a script, not part of the package) by its path, once."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def execnb():
    """The module that scripts/main.sh uses to execute notebooks."""
    return load_execute_notebooks()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab in fast mode on 127.0.0.1, serving a temporary copy of the repository's
    ``notebooks/`` (as ``notebooks/``) plus generated ``harness/`` notebooks.

    For measuring, not for CI: ``CVXATTN_BROWSER_FULL=1`` runs the notebooks at full size and
    ``CVXATTN_BROWSER_DATA=PATH`` gives the kernels that data root (e.g. one whose ``cache/paths/``
    ``bash scripts/main.sh`` filled) instead of an empty temporary one."""
    import browser_helpers as bh

    bh.require_browser()
    root = tmp_path_factory.mktemp("lab_root")
    shutil.copytree(REPO_ROOT / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    bh.write_harness_notebook(root / "harness" / "harness.ipynb")
    bh.write_harness_notebook(root / "harness" / "failing.ipynb", fail=True)
    full = os.environ.get("CVXATTN_BROWSER_FULL") == "1"
    env = {"CVXATTN_FAST": "0" if full else "1",
           "CVXATTN_DATA": os.environ.get("CVXATTN_BROWSER_DATA") or str(tmp_path_factory.mktemp("data"))}
    with bh.jupyterlab(root, tmp_path_factory.mktemp("lab_home"), env) as server:
        yield server


@pytest.fixture(scope="session")
def chromium():
    """Headless system Chromium driven by Playwright, shared by the browser tests."""
    import browser_helpers as bh

    bh.require_browser()
    with bh.chromium_browser() as browser:
        yield browser


@pytest.fixture
def lab_page(chromium, request):
    """A fresh page; its last state is saved to build/browser/<test>-last.png for debugging."""
    import browser_helpers as bh

    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        yield page
    finally:
        bh.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            page.screenshot(path=str(bh.SCREENSHOTS / f"{name}-last.png"), full_page=True)
        finally:
            context.close()


def pytest_collection_modifyitems(config, items):
    """Longest first: the browser tests and the notebook executions (a minute or more each) are
    handed out before the hundreds of short tests, so parallel workers finish together instead of
    one of them starting a notebook at the end.  Stable: the order within each kind is kept."""
    def rank(item):
        for i, mark in enumerate(("browser", "notebook", "slow")):
            if item.get_closest_marker(mark):
                return i
        return 3

    items.sort(key=rank)


@pytest.fixture
def one_torch_thread():
    """Toy sizes on a shared 2-core machine: one torch thread is much faster (restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
