"""The course book in a real browser: headless Chromium reads the built site from 127.0.0.1.

The book is built by scripts/build_book.py from notebooks executed in fast mode into
build/book-test/notebooks/ (kept between runs: a notebook runs again only when its cells changed
or its copy is missing), into build/book-test/book/ (book-gw0/, ... per pytest-xdist worker, the
shared part built under a lock), so the full-mode book of scripts/main.sh in build/book/ is left
alone.  The test walks the whole book with its "next" links from the landing page and back with
"previous", and on every page checks that MathJax rendered every formula (no ``mjx-merror``, no
``$`` or ``$$`` left in the text outside code), that every image loaded, and that the console
stayed free of errors; then it searches for a term of notebook 02.
Screenshots go to build/browser/book/.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import browser_helpers as bh
import pytest
from conftest import load_script

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = REPO_ROOT / "build" / "book-test"
SHOTS = bh.SCREENSHOTS / "book"
SEARCH_TERM, SEARCH_CHAPTER = "nuclear", "02_"

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
def book(execnb, tmp_path_factory):
    """Build the book from fast-mode executed notebooks (cached); return the site and the pages
    in the order the book lists them."""
    bh.require_browser()
    bb = load_script("build_book")
    if not (bb.MATHJAX_DIR / bb.MATHJAX_ENTRY).exists() and not bb.shutil.which("npm"):
        bh.skip_or_fail("npm is missing and MathJax is not installed in book/node_modules")
    data = tmp_path_factory.mktemp("book_data")
    # parallel workers share the executed notebooks and the staged sources (build/book-test/): one
    # at a time executes what is missing and builds, each into its own site, which it then serves
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    site = CACHE / ("book" if worker is None else f"book-{worker}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for src in bb.discover():
            try:
                bb.check_executed(src, CACHE / "notebooks" / src.name)
            except bb.BookError:  # missing, edited since it ran, or failed last time: run it again
                execnb.execute_notebook(src, CACHE, fast=True, data_dir=data, html=False, timeout=300)
        chapters = bb.build(CACHE / "notebooks", site)
    solutions = [c for c in chapters if (bb.NOTEBOOK_DIR / "solutions" / f"{c}.md").exists()]
    pages = (["index.html"] + [f"notebooks/{c}.html" for c in chapters]
             + ["notation.html", "provenance.html", "references.html"]
             + [f"solutions/{c}.html" for c in solutions])
    return site, pages


@pytest.fixture(scope="module")
def server(book):
    """``python -m http.server`` serving the site on 127.0.0.1; its base URL."""
    site, _ = book
    port = bh.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                             "--directory", str(site), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "index.html", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("http.server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def page(chromium):
    """A fresh page that records console errors, uncaught exceptions and any request that leaves
    127.0.0.1 (blocked: the book must read offline) in ``page.errors``."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"console.{m.type}: {m.text}")
          if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"uncaught: {e}"))

    def local_only(route):
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            route.continue_()
        else:
            pg.errors.append(f"request to another host: {url}")
            route.abort()

    context.route("**/*", local_only)
    try:
        yield pg
    finally:
        context.close()


def rel(url: str, base: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0].removeprefix(base)


def wait_for_math(pg) -> dict:
    """Wait until MathJax (loaded on pages with math) has typeset; count what it produced."""
    pg.wait_for_load_state("load")
    pg.evaluate("""async () => {
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
    }""")
    return pg.evaluate("""() => {
        const article = document.querySelector('article') || document.body;
        const text = article.cloneNode(true);
        text.querySelectorAll('pre, code, .highlight, mjx-container').forEach(e => e.remove());
        const math = [...article.querySelectorAll('.math')];
        return {math: math.length,
                rendered: math.filter(e => e.querySelector('mjx-container')).length,
                errors: [...article.querySelectorAll('mjx-merror')].map(e => e.textContent),
                raw: (text.textContent.match(/\\$/g) || []).length};
    }""")


def broken_images(pg) -> list[str]:
    """``src`` of every image on the page that did not load (natural width 0)."""
    return pg.evaluate("""async () => {
        const imgs = [...document.images];
        imgs.forEach(i => { i.loading = 'eager'; });
        await Promise.all(imgs.map(i => i.decode().catch(() => null)));
        return imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
    }""")


def test_book_pages_render_and_link_in_order(book, server, page):
    """From the landing page, "next" visits every page of the book in its order, each with its
    math typeset, its images loaded and no console error; "previous" walks back to the start."""
    _, pages = book
    SHOTS.mkdir(parents=True, exist_ok=True)
    visited, problems = [], []
    page.goto(server + "index.html")
    while True:
        here = rel(page.url, server)
        visited.append(here)
        assert len(visited) <= len(pages), f"the next links go past the end: {visited}"
        math = wait_for_math(page)
        if math["math"] and math["rendered"] < math["math"]:
            problems.append(f"{here}: {math['rendered']} of {math['math']} formulas typeset")
        if math["errors"] or math["raw"]:
            problems.append(f"{here}: MathJax errors {math['errors'][:3]}, '$' left in the text "
                            f"x{math['raw']} (TeX not parsed as math)")
        broken = broken_images(page)
        if broken:
            problems.append(f"{here}: images that did not load: {broken}")
        if page.errors:
            problems.append(f"{here}: {page.errors}")
            page.errors.clear()
        name = re.sub(r"[^\w.-]+", "_", here.removesuffix(".html"))
        page.screenshot(path=str(SHOTS / f"{len(visited):02d}-{name}.png"))
        nxt = page.locator("a.right-next")
        if nxt.count() == 0:
            break
        nxt.first.click()
        page.wait_for_load_state("load")
    assert visited == pages, "the next links do not walk the book in its order"
    assert not problems, "\n".join(problems)
    back = [rel(page.url, server)]
    while page.locator("a.left-prev").count():
        page.locator("a.left-prev").first.click()
        page.wait_for_load_state("load")
        back.append(rel(page.url, server))
    assert back == pages[::-1], "the previous links do not walk the book back"
    assert not page.errors, page.errors


def test_book_search_finds_notebook_02(book, server, page):
    """The search page finds a term of notebook 02 (Sphinx's index, read in the browser)."""
    page.goto(f"{server}search.html?q={SEARCH_TERM}")
    hit = page.locator(f"#search-results a[href*='notebooks/{SEARCH_CHAPTER}']").first
    hit.wait_for(timeout=60_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "search.png"))
    assert SEARCH_TERM in hit.inner_text().lower() or "02" in hit.inner_text()
    assert not page.errors, page.errors
