"""Build the course book (Sphinx + MyST-NB + sphinx-book-theme) from the executed notebooks.

    python scripts/build_book.py                         # build/notebooks/ -> build/book/
    python scripts/build_book.py --notebooks /tmp/nb/notebooks --out /tmp/book

Nothing is executed here (MyST-NB runs with ``nb_execution_mode = "off"``): the chapters are the
copies that ``scripts/execute_notebooks.py`` wrote.  The build

1. checks the executed copies: one for every ``notebooks/NN_*.ipynb``, with the same cells, every
   code cell run, and no error output; otherwise it stops and names the notebook and the cell;
2. lays out a Sphinx source tree in ``build/book-src/``: the pages of ``book/``, the executed
   notebooks (widget outputs replaced by a note, see :func:`prepare_notebook`), the worked
   solutions, the pages of the repository that ``book/`` includes, a references page collected
   from the notebooks' References sections, the tables of contents in reading order, and MathJax
   (from the npm registry, ``book/package.json``; installed into ``book/node_modules/`` on first use)
   under ``_static/mathjax/``;
3. runs ``sphinx-build -W --keep-going`` (every warning, e.g. a broken cross-reference or a missing
   image, fails the build) into ``build/book/``;
4. checks that no page loads a script, style sheet, font or image from another host.
"""

from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOK_DIR = REPO_ROOT / "book"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
# The course's order: 06 (the solvers) comes before 05 (which trains with them); see
# notebooks/README.md.  Notebooks not listed here follow in the order of their names.
READING_ORDER = ("00", "01", "02", "03", "04", "06", "05")
MATHJAX_DIR = BOOK_DIR / "node_modules" / "mathjax" / "es5"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # what Sphinx loads from a CDN by default, here from _static
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# the CSS classes of cvxattn_lib.widgets' explorers (Explorer.css_class: cvxattn-beta-explorer, ...)
EXPLORER_CLASS = re.compile(r"cvxattn-[\w-]*explorer")
KERNEL_NOTE = (
    "<div class=\"admonition note cvxattn-widget-note\">"
    "<p class=\"admonition-title\">Interactive explorer</p>"
    "<p>In JupyterLab this cell shows {what}, whose figure its controls redraw. Moving them needs "
    "a running Python kernel, which this page does not have: from the repository, run "
    "<code>bash scripts/ensure_env.sh</code>, then <code>.venv/bin/jupyter lab notebooks/</code>, "
    "and open this notebook. {figure}</p></div>")
# links in the notebooks' Markdown that point at repository pages the book splits up
LINK_TARGETS = {"README.md": "../index.md"}  # notebooks/README.md: the plan is on the landing page


class BookError(Exception):
    """The book cannot be built; the message names the notebook or page and what to do."""


def discover(source_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The source notebooks ``NN_*.ipynb`` of ``source_dir`` in reading order."""
    found = sorted(Path(source_dir).glob(NOTEBOOK_GLOB))
    rank = {prefix: i for i, prefix in enumerate(READING_ORDER)}
    return sorted(found, key=lambda p: (rank.get(p.name[:2], len(rank)), p.name))


# --- 1. the executed copies -------------------------------------------------------------------

def _sources(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def check_executed(source: Path, executed: Path):
    """Return the executed notebook at ``executed`` after checking it against ``source``:
    it exists, has the same cells, every code cell ran, and no cell shows an error."""
    import nbformat

    if not executed.exists():
        raise BookError(f"{source.name}: no executed copy at {executed}; run "
                        f"scripts/execute_notebooks.py (bash scripts/main.sh does) first")
    nb = nbformat.read(executed, as_version=4)
    if _sources(nb) != _sources(nbformat.read(source, as_version=4)):
        raise BookError(f"{source.name}: the executed copy {executed} has other cells than "
                        f"{source} (edited since it ran); execute it again")
    for i, cell in enumerate(nb.cells, 1):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise BookError(f"{source.name} failed to execute: cell {i} shows "
                                f"{out.get('ename')}: {out.get('evalue')}")
        if cell.source.strip() and cell.get("execution_count") is None:
            raise BookError(f"{source.name}: cell {i} of the executed copy never ran (the run "
                            f"stopped before it); execute the notebook again")
    return nb


# --- 2. the Sphinx source tree -----------------------------------------------------------------

def _widget_models(nb) -> dict:
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def _child_ids(model: dict) -> list[str]:
    return [c.removeprefix("IPY_MODEL_") for c in model.get("state", {}).get("children", [])
            if isinstance(c, str)]


def _widget_text(models: dict, model_id: str) -> str:
    """The text a widget tree shows, e.g. a tqdm bar's "label: 100% 60/60 [00:01<00:00]"."""
    model = models.get(model_id)
    if model is None:
        return ""
    state, name = model.get("state", {}), model.get("model_name", "")
    if name in ("HTMLModel", "LabelModel"):
        return re.sub(r"<[^>]+>", "", html.unescape(str(state.get("value", "")))).strip()
    if name in ("FloatProgressModel", "IntProgressModel"):
        return ""  # tqdm repeats its value in the HTML beside the bar
    return " ".join(t for t in (_widget_text(models, c) for c in _child_ids(model)) if t)


def _output_images(models: dict, model_id: str) -> list[dict]:
    """PNG outputs stored in the Output widgets of a widget tree (its initial figure)."""
    model = models.get(model_id, {})
    found = []
    if model.get("model_name") == "OutputModel":
        found += [o for o in model.get("state", {}).get("outputs", [])
                  if "image/png" in o.get("data", {})]
    for child in _child_ids(model):
        found += _output_images(models, child)
    return found


def _has_image(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def prepare_notebook(nb):
    """A copy of an executed notebook for a page without a kernel.

    - An explorer (a widget tagged ``cvxattn-...-explorer``) becomes a note saying that its controls
      need a running kernel and how to start one, followed by a static figure: the PNG in the
      widget's own output bundle if it has one; else none when the next code cell draws a figure
      (the notebooks draw a static copy there); else the figure the explorer opened with.
    - Any other widget (a tqdm progress bar) becomes the text it showed when the cell ended.
    - The stored widget state goes (MyST-NB would otherwise load the widget manager from a CDN).
    - Markdown links to repository pages that the book splits up are pointed at the book's page.
    """
    import nbformat

    nb = copy.deepcopy(nb)
    models = _widget_models(nb)
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    for pos, i in enumerate(code_cells):
        cell = nb.cells[i]
        nxt = nb.cells[code_cells[pos + 1]] if pos + 1 < len(code_cells) else None
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(out)
                continue
            model_id = view.get("model_id", "")
            model = models.get(model_id, {})
            classes = model.get("state", {}).get("_dom_classes", [])
            if any(EXPLORER_CLASS.fullmatch(c) for c in classes):
                kind = str(out["data"].get("text/plain", "a widget")).split("(", 1)[0]
                if "image/png" in out["data"]:  # a static figure shipped with the widget
                    images = [{"data": {k: v for k, v in out["data"].items() if k != WIDGET_VIEW}}]
                elif nxt is not None and _has_image(nxt):
                    images = []  # the notebook draws a static figure in the next cell
                else:
                    images = _output_images(models, model_id)[:1]
                figure = ("The figure of the next cell is a static one for readers of this page."
                          if not images else "Below is the figure it opens with.")
                note = KERNEL_NOTE.format(what=f"the explorer <code>{html.escape(kind)}</code>",
                                          figure=figure)
                outputs.append(nbformat.v4.new_output("display_data", data={"text/html": note}))
                outputs += [nbformat.v4.new_output("display_data", data=dict(img["data"]))
                            for img in images]
            else:
                text = _widget_text(models, model_id)
                if text:
                    outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text + "\n"))
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for old, new in LINK_TARGETS.items():
                cell.source = cell.source.replace(f"]({old})", f"]({new})")
    return nb


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.MULTILINE)
            if m:
                return m.group(1).strip()
    return fallback


def references_page(chapters: list[tuple[str, object]]) -> str:
    """The references page: the paper's citation (included from README.md) and each chapter's
    References section, collected from the notebooks."""
    lines = ["# References", "",
             "## The paper", "",
             "Sahiner, Ergen, Ozturkler, Pauly, Mardani and Pilanci, *Unraveling Attention via Convex "
             "Duality: Analysis and Interpretations of Vision Transformers*, ICML 2022, "
             "arXiv:2205.08078.  To cite it:", "",
             "```{include} _repo/README.md", ":start-after: \"## Citation\"", "```", "",
             "## By chapter", "",
             "Each chapter's References section, as the chapter lists it.", ""]
    for stem, nb in chapters:
        for cell in nb.cells:
            m = re.match(r"\s*##\s+References\s*\n", cell.source) if cell.cell_type == "markdown" \
                else None
            if m:
                lines += [f"### {_title(nb, stem)}", "",
                          f"From [the chapter](notebooks/{stem}.ipynb):", "",
                          cell.source[m.end():].strip(), ""]
    return "\n".join(lines)


def toc_page(chapters: list[str], solutions: list[str]) -> str:
    """The tables of contents, included by index.md: chapters in reading order, the reference
    pages, the worked solutions."""
    def toctree(caption: str, entries: list[str]) -> list[str]:
        return ["```{toctree}", ":maxdepth: 1", f":caption: {caption}", "", *entries, "```", ""]

    lines = (toctree("Course", [f"notebooks/{s}" for s in chapters])
             + toctree("Reference", ["notation", "provenance", "references"]))
    if solutions:
        lines += toctree("Worked solutions", [f"solutions/{s}" for s in solutions])
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (Sphinx rebuilds pages by mtime)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _copy_if_changed(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists() or dst.read_bytes() != src.read_bytes():
        shutil.copy2(src, dst)


def ensure_mathjax() -> Path:
    """MathJax 3 from the npm registry (pinned with its hash in book/package-lock.json),
    installed into book/node_modules/ by ``npm ci`` when missing."""
    if not (MATHJAX_DIR / MATHJAX_ENTRY).exists():
        npm = shutil.which("npm")
        if npm is None:
            raise BookError("the book bundles MathJax from the npm registry, but npm is not "
                            "installed: install Node.js with npm (Debian: apt-get install npm), "
                            "then run this again")
        print("build_book: installing MathJax into book/node_modules (npm ci)", flush=True)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(BOOK_DIR)],
                              cwd=BOOK_DIR, capture_output=True, text=True)
        if done.returncode != 0 or not (MATHJAX_DIR / MATHJAX_ENTRY).exists():
            raise BookError(f"npm ci in {BOOK_DIR} failed:\n{done.stdout}{done.stderr}")
    return MATHJAX_DIR


def _copy_mathjax(stage: Path) -> None:
    """The parts of MathJax's es5/ build the CommonHTML page needs: the entry point, the TeX
    extensions it may load, the CHTML fonts, the menu and the accessibility pieces."""
    src, dst = ensure_mathjax(), stage / "_static" / "mathjax"
    _copy_if_changed(src / MATHJAX_ENTRY, dst / MATHJAX_ENTRY)
    for sub in ("input", "output/chtml", "output/chtml.js", "ui", "a11y", "sre", "adaptors"):
        path = src / sub
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            _copy_if_changed(f, dst / f.relative_to(src))
    _copy_if_changed(src.parent / "LICENSE", dst / "LICENSE")


def stage_sources(executed_dir: Path, stage: Path, source_dir: Path = NOTEBOOK_DIR,
                  solutions_dir: Path | None = None, with_solutions: bool = True) -> list[str]:
    """Lay out the Sphinx source tree in ``stage``; return the chapters' names in order.
    ``with_solutions=False`` leaves the worked solutions out (a students' edition)."""
    import nbformat

    sources = discover(source_dir)
    if not sources:
        raise BookError(f"no notebooks {NOTEBOOK_GLOB} in {source_dir}")
    solutions_dir = Path(solutions_dir or Path(source_dir) / "solutions")
    stage.mkdir(parents=True, exist_ok=True)
    keep: set[Path] = set()

    def put_text(rel: str, text: str) -> None:
        _write_if_changed(stage / rel, text)
        keep.add(stage / rel)

    def put_file(rel: str, src: Path) -> None:
        _copy_if_changed(src, stage / rel)
        keep.add(stage / rel)

    for src in sorted(p for p in BOOK_DIR.rglob("*") if p.is_file()):
        rel = src.relative_to(BOOK_DIR)
        if rel.parts[0] not in ("node_modules", "package.json", "package-lock.json") \
                and "__pycache__" not in rel.parts:
            put_file(str(rel), src)
    put_file("_repo/README.md", REPO_ROOT / "README.md")
    put_file("_repo/notebooks/README.md", NOTEBOOK_DIR / "README.md")

    chapters = []
    for src in sources:
        nb = check_executed(src, Path(executed_dir) / src.name)
        put_text(f"notebooks/{src.name}", nbformat.writes(prepare_notebook(nb)))
        chapters.append((src.stem, nb))
    solutions = [c for c, _ in chapters
                 if with_solutions and (solutions_dir / f"{c}.md").exists()]
    for name in solutions:
        put_file(f"solutions/{name}.md", solutions_dir / f"{name}.md")
    put_text("references.md", references_page(chapters))
    put_text("_generated/toc.md", toc_page([c for c, _ in chapters], solutions))

    _copy_mathjax(stage)
    keep |= {p for p in (stage / "_static" / "mathjax").rglob("*") if p.is_file()}
    for stale in [p for p in stage.rglob("*") if p.is_file() and p not in keep]:
        stale.unlink()  # a page removed from book/ or a notebook renamed
    return [c for c, _ in chapters]


# --- 3. Sphinx, 4. the offline check -------------------------------------------------------------

def run_sphinx(stage: Path, out: Path, doctrees: Path) -> None:
    """``sphinx-build -W --keep-going``: any warning fails the build (after reporting them all)."""
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
           "-d", str(doctrees), str(stage), str(out)]
    done = subprocess.run(cmd, cwd=stage)
    if done.returncode != 0:
        raise BookError(f"sphinx-build failed (exit {done.returncode}); every warning is an error "
                        f"(see the messages above; sources in {stage})")


_FETCHED = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src",
            "audio": "src", "embed": "src", "link": "href"}
_LINK_RELS_FETCHED = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "apple-touch-icon",
                      "manifest", "prefetch"}
_CSS_URL = re.compile(r"(?:url\(\s*|@import\s+)[\"']?((?:https?:)?//[^\"')\s]+)", re.IGNORECASE)
_LOCAL = re.compile(r"(?:https?:)?//(?:127\.0\.0\.1|localhost)(?:[:/]|$)", re.IGNORECASE)


def _remote(url: str) -> bool:
    return bool(re.match(r"(?:https?:)?//", url.strip(), re.IGNORECASE)) and not _LOCAL.match(url.strip())


def external_assets(site: Path) -> list[str]:
    """``file: <tag> URL`` for every script, style sheet, font, image or frame that a page of
    ``site`` (or one of its style sheets) would fetch from a host other than the site itself.
    Hyperlinks (``<a href>``, ``<link rel="canonical">``) fetch nothing and are not listed."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Assets(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            url = attrs.get(_FETCHED.get(tag, ""), "") or ""
            if tag == "link" and not set((attrs.get("rel") or "").lower().split()) & _LINK_RELS_FETCHED:
                return
            if url and _remote(url):
                found.append(f"{self.page}: <{tag}> {url}")

    for page in sorted(site.rglob("*.html")):
        parser = Assets()
        parser.page = page.relative_to(site)
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    for css in sorted(site.rglob("*.css")):
        for m in _CSS_URL.finditer(css.read_text(encoding="utf-8", errors="replace")):
            if _remote(m.group(1)):
                found.append(f"{css.relative_to(site)}: {m.group(1)}")
    return found


def build(executed_dir: Path, out: Path, stage: Path | None = None,
          source_dir: Path = NOTEBOOK_DIR, solutions_dir: Path | None = None,
          with_solutions: bool = True) -> list[str]:
    """Check, stage and build; return the chapters in order.  Raises :class:`BookError`."""
    out = Path(out).resolve()
    stage = Path(stage or out.parent / f"{out.name}-src").resolve()
    chapters = stage_sources(Path(executed_dir).resolve(), stage, source_dir, solutions_dir, with_solutions)
    run_sphinx(stage, out, out.parent / f"{out.name}-doctrees")
    remote = external_assets(out)
    if remote:
        raise BookError("the book would fetch from other hosts (it must read offline):\n  "
                        + "\n  ".join(remote))
    return chapters


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", type=Path, default=REPO_ROOT / "build" / "notebooks",
                    help="the executed notebooks (default: build/notebooks/)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "book",
                    help="where the site goes (default: build/book/)")
    ap.add_argument("--stage", type=Path, default=None,
                    help="the Sphinx source tree it lays out (default: OUT-src, i.e. build/book-src/)")
    ap.add_argument("--no-solutions", action="store_true",
                    help="leave out the worked solutions (an edition to hand students before the lab)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        chapters = build(args.notebooks, args.out, args.stage,
                         with_solutions=not args.no_solutions)
    except BookError as err:
        print(f"build_book: FAILED: {err}", file=sys.stderr, flush=True)
        return 1
    print(f"build_book: {len(chapters)} chapters in {time.perf_counter() - t0:.1f} s; open "
          f"{args.out / 'index.html'} (or: python -m http.server -d {args.out})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
