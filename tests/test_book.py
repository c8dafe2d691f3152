"""The course book's build (scripts/build_book.py) without a browser.

- the executed copies are checked: missing, edited since they ran, stopped early, or showing an
  error, each stops the build with the notebook's name;
- widget outputs become a note on how to start a kernel (explorers) or the text they showed
  (progress bars), and the stored widget state goes;
- a tiny book built from a generated notebook: it builds, reads offline, and a broken reference or
  a missing image in a copy fails it (``sphinx-build -W``).

The real book is built and opened in Chromium by tests/test_book_browser.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import load_script



bb = load_script("build_book")
VIEW, STATE = bb.WIDGET_VIEW, bb.WIDGET_STATE


def source_notebook(extra_markdown: str = "") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · A tiny chapter\n\nThe norm $\\|Z\\|_*$ and\n\n"
                                              "$$\nZ = U \\Sigma V^\\top\n$$\n" + extra_markdown),
                nbformat.v4.new_code_cell("print(1 + 1)"),
                nbformat.v4.new_markdown_cell("## References\n\n- A. Author. *A paper.* 2020.")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def executed(nb: nbformat.NotebookNode, error: bool = False) -> nbformat.NotebookNode:
    """A copy of ``nb`` as if executed: counts set, the code cell printed (or raised)."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        cell.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="boom",
                                               traceback=["ValueError: boom"]) if error else
                        nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    return nb


def write_pair(tmp_path: Path, src: nbformat.NotebookNode, done: nbformat.NotebookNode,
               name: str = "01_tiny.ipynb") -> tuple[Path, Path]:
    """Write the source notebook to tmp/src/ and the executed copy to tmp/executed/."""
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "executed").mkdir(exist_ok=True)
    nbformat.write(src, tmp_path / "src" / name)
    nbformat.write(done, tmp_path / "executed" / name)
    return tmp_path / "src", tmp_path / "executed"


# -- the executed copies ----------------------------------------------------------------------

def test_a_good_executed_copy_passes(tmp_path):
    src = source_notebook()
    src_dir, done_dir = write_pair(tmp_path, src, executed(src))
    nb = bb.check_executed(src_dir / "01_tiny.ipynb", done_dir / "01_tiny.ipynb")
    assert nb.cells[1].outputs[0].text == "2\n"


def test_an_error_output_names_the_notebook_and_cell(tmp_path):
    src = source_notebook()
    src_dir, done_dir = write_pair(tmp_path, src, executed(src, error=True))
    with pytest.raises(bb.BookError, match=r"01_tiny.ipynb failed to execute: cell 2 shows "
                                           r"ValueError: boom"):
        bb.check_executed(src_dir / "01_tiny.ipynb", done_dir / "01_tiny.ipynb")


def test_missing_stale_or_unfinished_copies_are_refused(tmp_path):
    src = source_notebook()
    src_dir, done_dir = write_pair(tmp_path, src, executed(src))
    with pytest.raises(bb.BookError, match=r"02_other.ipynb: no executed copy"):
        bb.check_executed(src_dir / "02_other.ipynb", done_dir / "02_other.ipynb")
    edited = source_notebook("One more sentence.")
    nbformat.write(edited, src_dir / "01_tiny.ipynb")
    with pytest.raises(bb.BookError, match=r"01_tiny.ipynb: the executed copy .* other cells"):
        bb.check_executed(src_dir / "01_tiny.ipynb", done_dir / "01_tiny.ipynb")
    unfinished = executed(edited)
    unfinished.cells[1].execution_count = None
    nbformat.write(unfinished, done_dir / "01_tiny.ipynb")
    with pytest.raises(bb.BookError, match=r"01_tiny.ipynb: cell 2 of the executed copy never ran"):
        bb.check_executed(src_dir / "01_tiny.ipynb", done_dir / "01_tiny.ipynb")


def test_reading_order_puts_06_before_05(tmp_path):
    for stem in ("05_b", "06_a", "00_t", "07_new"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / f"{stem}.ipynb")
    assert [p.stem for p in bb.discover(tmp_path)] == ["00_t", "06_a", "05_b", "07_new"]


# -- widget outputs -----------------------------------------------------------------------------

def model(name: str, **state) -> dict:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="


def widget_notebook(static_copy: bool) -> nbformat.NotebookNode:
    """An executed notebook with a tqdm-like bar and an explorer whose Output holds a figure;
    ``static_copy`` adds the cell after it that draws a static figure."""
    nb = nbformat.v4.new_notebook()
    bar = nbformat.v4.new_code_cell("train()", execution_count=1)
    bar.outputs = [nbformat.v4.new_output("display_data", data={
        VIEW: {"model_id": "bar", "version_major": 2, "version_minor": 0},
        "text/plain": "Adam:   0%|          | 0/10"})]
    explorer = nbformat.v4.new_code_cell("display(explorer)", execution_count=2)
    explorer.outputs = [nbformat.v4.new_output("display_data", data={
        VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "BetaExplorer(children=(FloatLogSlider(value=0.1),))"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Widgets\n\nSee [the plan](README.md)."),
                bar, explorer]
    if static_copy:
        cell = nbformat.v4.new_code_cell("explorer.figure(1.0)", execution_count=3)
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG,
                                                                     "text/plain": "<Figure>"})]
        nb.cells.append(cell)
    nb.metadata["widgets"] = {STATE: {"version_major": 2, "version_minor": 0, "state": {
        "bar": model("HBoxModel", children=["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]),
        "l": model("HTMLModel", value="Adam: 100%"),
        "p": model("FloatProgressModel", value=10, max=10),
        "r": model("HTMLModel", value=" 10/10 [00:01&lt;00:00]"),
        "box": model("VBoxModel", children=["IPY_MODEL_s", "IPY_MODEL_o"],
                     _dom_classes=["cvxattn-beta-explorer"]),
        "s": model("FloatLogSliderModel", value=0.1),
        "o": {"model_name": "OutputModel", "model_module": "@jupyter-widgets/output", "state": {
            "outputs": [{"output_type": "display_data", "metadata": {},
                         "data": {"image/png": PNG, "text/plain": "<Figure>"}}]}},
    }}}
    return nb


def test_widgets_become_a_kernel_note_or_their_text():
    page = bb.prepare_notebook(widget_notebook(static_copy=True))
    assert "widgets" not in page.metadata
    bar, explorer = page.cells[1].outputs, page.cells[2].outputs
    assert [o.get("text") for o in bar] == ["Adam: 100% 10/10 [00:01<00:00]\n"]
    assert len(explorer) == 1, "the next cell draws the static figure, so none is added here"
    note = explorer[0].data["text/html"]
    for words in ("<code>BetaExplorer</code>", "running Python kernel",
                  ".venv/bin/jupyter lab notebooks/", "The figure of the next cell is a static one"):
        assert words in note
    assert "](../index.md)" in page.cells[0].source  # the lecturer's page is the landing page
    assert not any(VIEW in o.get("data", {}) for c in page.cells for o in c.get("outputs", []))


def test_an_explorer_without_a_static_copy_shows_its_initial_figure():
    explorer = bb.prepare_notebook(widget_notebook(static_copy=False)).cells[2].outputs
    assert "Below is the figure it opens with." in explorer[0].data["text/html"]
    assert explorer[1].data["image/png"] == PNG


def test_a_static_figure_in_the_widget_bundle_is_kept():
    nb = widget_notebook(static_copy=True)
    nb.cells[2].outputs[0].data["image/png"] = PNG
    explorer = bb.prepare_notebook(nb).cells[2].outputs
    assert "Below is the figure it opens with." in explorer[0].data["text/html"]
    assert explorer[1].data["image/png"] == PNG and bb.WIDGET_VIEW not in explorer[1].data


# -- offline check ------------------------------------------------------------------------------

def test_external_assets_finds_cdn_scripts_styles_and_fonts(tmp_path):
    (tmp_path / "a.html").write_text(
        '<link rel="stylesheet" href="_static/x.css"><script src="_static/m.js"></script>'
        '<link rel="canonical" href="https://example.org/a.html">'
        '<a href="https://arxiv.org/abs/2205.08078">paper</a>'
        '<script src="http://127.0.0.1:8000/local.js"></script>')
    assert bb.external_assets(tmp_path) == []
    (tmp_path / "b.html").write_text('<script src="https://cdn.jsdelivr.net/npm/mathjax@3"></script>'
                                     '<link href="//fonts.example/f.css" rel="stylesheet">')
    (tmp_path / "c.css").write_text("@font-face { src: url(https://fonts.example/f.woff2); }")
    found = bb.external_assets(tmp_path)
    assert found == ["b.html: <script> https://cdn.jsdelivr.net/npm/mathjax@3",
                     "b.html: <link> //fonts.example/f.css", "c.css: https://fonts.example/f.woff2"]


# -- a tiny book --------------------------------------------------------------------------------

def require_mathjax() -> None:
    """The build copies MathJax from book/node_modules (npm ci installs it on first use)."""
    if not (bb.MATHJAX_DIR / bb.MATHJAX_ENTRY).exists() and shutil.which("npm") is None:
        import browser_helpers as bh

        bh.skip_or_fail("npm is missing and MathJax is not installed in book/node_modules")


def build_tiny(tmp_path: Path, extra_markdown: str = "") -> Path:
    src = source_notebook(extra_markdown)
    src_dir, done_dir = write_pair(tmp_path, src, executed(src))
    out = tmp_path / "site"
    bb.build(done_dir, out, source_dir=src_dir, solutions_dir=tmp_path / "no-solutions")
    return out


@pytest.mark.slow
def test_tiny_book_builds_offline_with_math_and_references(tmp_path):
    require_mathjax()
    out = build_tiny(tmp_path)
    chapter = (out / "notebooks" / "01_tiny.html").read_text()
    assert 'class="math' in chapter and "mathjax/tex-mml-chtml.js" in chapter
    assert (out / "_static" / "mathjax" / "tex-mml-chtml.js").exists()
    refs = (out / "references.html").read_text()
    assert "A paper." in refs and "sahiner2022unraveling" in refs
    assert bb.external_assets(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["See [the other chapter](02_missing.ipynb).",
                                    "![a figure](missing.png)"], ids=["reference", "image"])
def test_a_broken_reference_or_image_fails_the_build(tmp_path, broken, capfd):
    require_mathjax()
    with pytest.raises(bb.BookError, match="sphinx-build failed"):
        build_tiny(tmp_path, broken)
    err = capfd.readouterr().err
    assert "01_tiny" in err and ("02_missing" in err or "missing.png" in err), err
