"""Drive JupyterLab in headless Chromium: start a server, open a notebook, run it, poke widgets.

Used by the ``browser`` tests.  Everything listens on 127.0.0.1 only, with a random token, and
JupyterLab's user config, settings, workspaces and kernelspecs are redirected to a temporary
directory, so the run neither reads nor changes the user's Jupyter set-up.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO_ROOT / "build" / "browser"
_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the visible tab


def in_ci() -> bool:
    """True when ``CI=true``: missing browser pieces then fail instead of skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it under CI where the browser test must run."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def require_browser() -> None:
    """Skip (fail under CI) unless Playwright for Python and /usr/bin/chromium are present."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("Playwright for Python is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing: apt-get install chromium (Debian) "
                     "or run bash scripts/test.sh as root, which installs it")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A running JupyterLab server (see :func:`jupyterlab`)."""

    def __init__(self, root_dir: Path, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.root_dir, self.port, self.token, self.proc, self.log = root_dir, port, token, proc, log
        self.base = f"http://127.0.0.1:{port}"

    def url(self, path: str = "lab") -> str:
        """A URL on the server that logs in with the token."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        """The last lines of the server's log, for failure messages."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def _isolated_jupyter_dirs(home: Path) -> dict[str, str]:
    """Env vars that point Jupyter's user dirs into ``home``, with a kernelspec for this python."""
    from ipykernel.kernelspec import write_kernel_spec

    kernels = home / "path" / "kernels"
    write_kernel_spec(kernels / "python3")  # argv[0] = sys.executable, so the venv's python
    settings = {
        # every cell stays in the DOM, so prompts and outputs of off-screen cells can be read
        "notebook-extension/tracker": {"windowingMode": "none"},
        # no "get notified about Jupyter news?" toast, no requests to the internet
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in settings.items():
        path = home / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return {
        "JUPYTER_PATH": str(home / "path"),  # first in the kernelspec search order
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }


@contextmanager
def jupyterlab(root_dir: Path, home: Path, env: dict[str, str] | None = None,
               timeout: float = 120):
    """Start JupyterLab on 127.0.0.1 serving ``root_dir``; shut it down on exit.

    ``home`` is a scratch directory for the server's config and log; ``env`` is added to the
    environment of the server and hence of its kernels (e.g. ``{"CVXATTN_FAST": "1"}``).
    """
    port, token = free_port(), secrets.token_hex(16)
    full_env = {**os.environ, **_isolated_jupyter_dirs(home), **(env or {})}
    log = home / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
           "--ServerApp.terminals_enabled=False",
           "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI often run as root
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
                                cwd=root_dir)
    lab = JupyterLab(root_dir, port, token, proc, log)
    try:
        _wait_until_up(lab, timeout)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_up(lab: JupyterLab, timeout: float) -> None:
    """Poll ``/api/status`` until the server answers; fail with its log if it dies or hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {lab.proc.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(lab.url("api/status"), timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")


@contextmanager
def chromium_browser():
    """Headless system Chromium through Playwright; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            yield browser
        finally:
            browser.close()


def write_harness_notebook(path: Path, fail: bool = False) -> Path:
    """A small notebook shaped like the library's widgets, to test this harness by itself:
    a VBox with CSS class ``cvxattn-harness`` holding a ``FloatLogSlider`` ("β") and an
    ``Output`` that redraws a matplotlib figure.  ``fail`` adds a cell that raises, and one
    after it that therefore never runs."""
    import nbformat

    code = """\
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

slider = widgets.FloatLogSlider(value=1.0, base=10, min=-3, max=2, step=0.1,
                                description="β (harness)", continuous_update=False)
out = widgets.Output()

def draw(change=None):
    with out:
        out.clear_output(wait=True)
        fig, ax = plt.subplots(figsize=(3, 2))
        x = np.linspace(-2, 2, 50)
        ax.plot(x, np.maximum(x, 0) / (1 + slider.value))
        ax.set_title(f"beta = {slider.value:.3g}")
        display(fig)
        plt.close(fig)

slider.observe(draw, names="value")
draw()
box = widgets.VBox([slider, out])
box.add_class("cvxattn-harness")
box"""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Browser-test harness"),
                nbformat.v4.new_code_cell(code)]
    if fail:
        nb.cells += [nbformat.v4.new_code_cell('raise RuntimeError("harness failure")'),
                     nbformat.v4.new_code_cell("print('never runs')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def open_notebook(page, lab: JupyterLab, rel_path: str, timeout_ms: float = 120_000) -> None:
    """Open ``rel_path`` (relative to the server's root) as the only tab (``?reset`` drops the
    saved workspace, so notebooks opened by earlier tests stay closed); wait for an idle kernel."""
    page.goto(lab.url(f"lab/tree/{rel_path}?reset"), timeout=timeout_ms)
    page.locator(f"{_PANEL} .jp-Cell").first.wait_for(timeout=timeout_ms)
    wait_kernel_idle(page, timeout_ms)


def wait_kernel_idle(page, timeout_ms: float = 120_000) -> None:
    """Wait until the notebook has a kernel (not "No Kernel") and the toolbar reports it idle.

    Right after opening, the indicator says idle before a kernel is attached; running cells
    then would pop up JupyterLab's "Select Kernel" dialog.
    """
    page.wait_for_function(
        """(panelSel) => {
            const panel = document.querySelector(panelSel);
            if (!panel) return false;
            const name = panel.querySelector('.jp-KernelName');
            const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
            return name && ind && name.textContent.trim() !== 'No Kernel'
                   && ind.getAttribute('data-status') === 'idle';
        }""", arg=_PANEL, timeout=timeout_ms, polling=250)


def run_all_cells(page, timeout_ms: float = 600_000) -> None:
    """Run > Run All Cells through the menu bar; wait until no cell is queued or running.

    Assumes the notebook was stored without execution counts (the packaging test enforces it).
    A cell that raises stops the run; see :func:`error_outputs` and :func:`unexecuted_cells`.
    """
    page.get_by_role("menubar").get_by_role("menuitem", name="Run", exact=True).click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
    page.wait_for_function(
        """(panelSel) => {
            const panel = document.querySelector(panelSel);
            const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                .map(p => p.textContent.trim());
            const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
            return prompts.some(t => /^\\[\\d+\\]:$/.test(t))
                && !prompts.includes('[*]:')
                && ind && ind.getAttribute('data-status') === 'idle';
        }""", arg=_PANEL, timeout=timeout_ms, polling=500)


def unexecuted_cells(page) -> int:
    """How many code cells still show ``[ ]:`` (a cell before them failed)."""
    prompts = page.locator(f"{_PANEL} .jp-CodeCell .jp-InputPrompt").all_inner_texts()
    return sum(1 for t in prompts if not re.fullmatch(r"\[\d+\]:", t.strip()))


_ERROR_LINE = re.compile(r"^\w*(Error|Exception|Interrupt|Exit)\b.*", re.MULTILINE)


def error_outputs(page) -> list[str]:
    """Texts of outputs showing an exception (also inside widget Outputs) or a broken widget."""
    found = []
    for out in page.locator(f"{_PANEL} .jp-OutputArea-output").all():
        text = out.inner_text()
        stderr = out.get_attribute("data-mime-type") == "application/vnd.jupyter.stderr"
        if (stderr and ("Traceback" in text or _ERROR_LINE.search(text))
                or "Error displaying widget" in text):
            found.append(text)
    return found


def widget(page, css_class: str):
    """The widget a library builder tagged with ``add_class(css_class)``."""
    loc = page.locator(f"{_PANEL} .{css_class}").first
    loc.wait_for(timeout=60_000)
    return loc


def slider(box, label_contains: str):
    """The slider inside ``box`` whose description contains ``label_contains``."""
    return box.locator(".widget-slider", has=box.page.locator(
        ".widget-label", has_text=label_contains)).first


def readout(slider_loc) -> str:
    """The value the slider shows next to it."""
    return slider_loc.locator(".widget-readout").first.inner_text().strip()


def nudge_slider(slider_loc, presses: int = 3) -> str:
    """Move the slider ``presses`` steps with the keyboard (right, or left if it sits at its
    maximum); return the new readout."""
    handle = slider_loc.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    before = readout(slider_loc)
    for key in ("ArrowRight", "ArrowLeft"):
        handle.focus()
        for _ in range(presses):
            handle.press(key)
        if readout(slider_loc) != before:
            break
    return readout(slider_loc)


FIGURE = ".widget-output img"


def image_src(box, selector: str = FIGURE) -> str:
    """``src`` of the first figure in ``box`` (a data URI for inline matplotlib figures)."""
    img = box.locator(selector).first
    img.wait_for(timeout=60_000)
    return img.get_attribute("src") or ""


def wait_image_change(page, box, old_src: str, selector: str = FIGURE,
                      timeout_ms: float = 120_000, settle_s: float = 1.0) -> str:
    """Wait until the first figure in ``box`` has a new ``src``, then until the kernel is idle
    and the figure has stayed the same for ``settle_s`` (several slider steps queue several
    redraws); return the final ``src``."""
    page.wait_for_function(
        """([el, sel, old]) => { const img = el.querySelector(sel);
                                 return !!img && !!img.src && img.src !== old; }""",
        arg=[box.element_handle(), selector, old_src], timeout=timeout_ms, polling=250)
    deadline = time.monotonic() + timeout_ms / 1000
    src = image_src(box, selector)
    while time.monotonic() < deadline:
        wait_kernel_idle(page, timeout_ms)
        time.sleep(settle_s)
        latest = image_src(box, selector)
        if latest == src:
            return src
        src = latest
    raise TimeoutError(f"the figure kept changing for {timeout_ms / 1000:.0f} s")


_LATENCY_PROBE = """(el) => {
  // one MutationObserver on the widget: each new figure src records the time since the key press
  window.__cvxLat = []; window.__cvxT0 = null;
  const img = () => el.querySelector('.widget-output img');
  window.__cvxSrc = img() ? img().src : null;
  const obs = new MutationObserver(() => {
    const i = img();
    if (i && i.src && i.src !== window.__cvxSrc && window.__cvxT0 !== null) {
      window.__cvxLat.push(performance.now() - window.__cvxT0);
      window.__cvxSrc = i.src; window.__cvxT0 = null;
    }
  });
  obs.observe(el, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


def slider_latencies(page, box, slider_loc, moves: int = 6, timeout_ms: float = 60_000) -> list[float]:
    """Move the slider ``moves`` single steps with the keyboard (right; left once it stops moving)
    and return, for each move, the milliseconds from the key's release to the new figure's ``src``
    in the page (measured in the page with ``performance.now()`` and a MutationObserver).  A move
    whose figure never changes raises ``TimeoutError``."""
    handle = slider_loc.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    box.evaluate(_LATENCY_PROBE)
    key = "ArrowRight"
    for i in range(moves):
        before = readout(slider_loc)
        handle.focus()
        page.evaluate("() => { window.__cvxT0 = performance.now(); }")
        handle.press(key)
        if readout(slider_loc) == before:  # at the end of the slider: go the other way
            key = "ArrowLeft"
            page.evaluate("() => { window.__cvxT0 = performance.now(); }")
            handle.press(key)
        page.wait_for_function("(n) => window.__cvxLat.length >= n", arg=i + 1, timeout=timeout_ms,
                               polling="raf")
        wait_kernel_idle(page, timeout_ms)
    return [float(x) for x in page.evaluate("() => window.__cvxLat")]


def record_latency(name: str, latencies: list[float], path: Path | None = None) -> dict:
    """Add ``name``'s latencies (ms) with their median and worst to ``build/browser/
    slider_latency.json`` (other entries kept; written through a temporary file), print them, and
    return the entry."""
    import statistics

    path = path or SCREENSHOTS / "slider_latency.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    entry = {"moves": len(latencies), "median_ms": statistics.median(latencies),
             "worst_ms": max(latencies), "latencies_ms": latencies}
    data[name] = entry
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    print(f"{name}: slider release -> new figure, median {entry['median_ms']:.0f} ms, worst "
          f"{entry['worst_ms']:.0f} ms over {len(latencies)} moves")
    return entry
