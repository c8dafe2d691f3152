"""Every notebook executes headless in fast mode, through the runner that scripts/main.sh uses."""

from __future__ import annotations

from pathlib import Path

import pytest

FAST_CELL_TIMEOUT_S = 300  # fast-mode cells take seconds; a stuck kernel fails here, not in 30 min
NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, execnb, tmp_path):
    """CVXATTN_FAST=1 and a scratch CVXATTN_DATA; a failing cell fails with source + traceback."""
    try:
        execnb.execute_notebook(path, tmp_path / "build", fast=True, data_dir=tmp_path / "data",
                                timeout=FAST_CELL_TIMEOUT_S)
    except execnb.NotebookExecutionError as err:
        pytest.fail(str(err), pytrace=False)
