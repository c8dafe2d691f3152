"""Real-browser tests: JupyterLab in headless Chromium runs a notebook and a slider redraws a figure.

The harness tests check the driving code itself on generated notebooks; the notebook tests drive
the real notebooks.  Screenshots go to build/browser/.  Without Playwright or /usr/bin/chromium
these tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

from pathlib import Path

import browser_helpers as bh
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_01 = "notebooks/01_two_layer_networks_are_convex.ipynb"

# one xdist worker runs them all, so they share one JupyterLab server and one Chromium
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


def run_notebook(page, lab, rel_path: str) -> None:
    """Open ``rel_path`` in JupyterLab, run all cells, and fail on any error output."""
    bh.open_notebook(page, lab, rel_path)
    bh.run_all_cells(page)
    errors = bh.error_outputs(page)
    assert not errors, f"{rel_path}: error output in the browser:\n" + "\n---\n".join(errors)
    assert bh.unexecuted_cells(page) == 0, f"{rel_path}: some code cells did not run"


def slider_redraws_figure(page, css_class: str, label: str, shots: str = "") -> None:
    """Move the slider labelled ``label`` in the widget tagged ``css_class``; the figure in its
    Output must change.  ``shots`` prefixes the before/after screenshots in build/browser/."""
    box = bh.widget(page, css_class)
    slider = bh.slider(box, label)
    value, src = bh.readout(slider), bh.image_src(box)
    assert src, f"no figure in .{css_class}"
    bh.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    box.screenshot(path=str(bh.SCREENSHOTS / f"{shots}before.png"))
    new_value = bh.nudge_slider(slider)
    assert new_value != value, f"the slider {label!r} did not move from {value}"
    new_src = bh.wait_image_change(page, box, src)
    box.screenshot(path=str(bh.SCREENSHOTS / f"{shots}after.png"))
    assert new_src != src
    errors = bh.error_outputs(page)
    assert not errors, "error after moving the slider:\n" + "\n---\n".join(errors)


def test_harness_slider_redraws(lab, lab_page):
    """The driving code works on a generated widget notebook (independent of the library)."""
    run_notebook(lab_page, lab, "harness/harness.ipynb")
    slider_redraws_figure(lab_page, "cvxattn-harness", "β", shots="harness-")


def test_harness_sees_errors(lab, lab_page):
    """A cell that raises is reported, and the cells after it count as not run."""
    bh.open_notebook(lab_page, lab, "harness/failing.ipynb")
    bh.run_all_cells(lab_page)
    errors = bh.error_outputs(lab_page)
    assert any("harness failure" in e for e in errors), errors
    assert bh.unexecuted_cells(lab_page) == 1


def test_notebook01_beta_slider(lab, lab_page):
    """Notebook 01 runs in JupyterLab and its β slider redraws the figure."""
    if not (REPO_ROOT / NOTEBOOK_01).exists():
        pytest.skip(f"{NOTEBOOK_01} does not exist yet")
    run_notebook(lab_page, lab, NOTEBOOK_01)
    slider_redraws_figure(lab_page, "cvxattn-beta-explorer", "β")


@pytest.mark.parametrize("notebook,css_class,label", [
    ("notebooks/02_linear_self_attention_is_a_nuclear_norm_program.ipynb", "cvxattn-rank-explorer", "β"),
    ("notebooks/03_gated_relu_attention_clusters_tokens.ipynb", "cvxattn-clustering-explorer", "noise"),
    ("notebooks/04_token_mixing_by_position_and_by_frequency.ipynb", "cvxattn-mixer-explorer", "β"),
], ids=["02", "03", "04"])
def test_notebook_sliders(lab, lab_page, notebook, css_class, label):
    """Notebooks 02-04 run in JupyterLab and moving a slider redraws their figure."""
    run_notebook(lab_page, lab, notebook)
    slider_redraws_figure(lab_page, css_class, label, shots=f"nb{Path(notebook).name[:2]}-")


LATENCY_SLIDERS = [
    ("notebooks/01_two_layer_networks_are_convex.ipynb", "cvxattn-beta-explorer"),
    ("notebooks/02_linear_self_attention_is_a_nuclear_norm_program.ipynb", "cvxattn-rank-explorer"),
    ("notebooks/03_gated_relu_attention_clusters_tokens.ipynb", "cvxattn-clustering-explorer"),
    ("notebooks/04_token_mixing_by_position_and_by_frequency.ipynb", "cvxattn-mixer-explorer"),
]


@pytest.mark.parametrize("notebook,css_class", LATENCY_SLIDERS, ids=["01", "02", "03", "04"])
def test_beta_slider_latency(lab, lab_page, notebook, css_class):
    """Each notebook's β slider moved 6 single steps: every move brings a new figure, and the time
    from the key's release to the new figure in the page is printed and written to
    build/browser/slider_latency.json (a benchmark, not asserted: timings depend on the machine)."""
    run_notebook(lab_page, lab, notebook)
    box = bh.widget(lab_page, css_class)
    latencies = bh.slider_latencies(lab_page, box, bh.slider(box, "β"), moves=6)
    assert len(latencies) == 6 and all(t > 0 for t in latencies)
    errors = bh.error_outputs(lab_page)
    assert not errors, "error after moving the slider:\n" + "\n---\n".join(errors)
    bh.record_latency(Path(notebook).name[:2], latencies)
