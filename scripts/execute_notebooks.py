"""Execute the notebooks headless and render them to HTML (used by scripts/main.sh and the tests).

    python scripts/execute_notebooks.py                      # every notebooks/NN_*.ipynb, full mode
    python scripts/execute_notebooks.py --fast --only 01     # one notebook, small sizes
    python scripts/execute_notebooks.py --out /tmp/b some/dir_or.ipynb
    python scripts/execute_notebooks.py --book               # then the course book (scripts/main.sh)

Executed copies go to ``OUT/notebooks/NAME.ipynb`` and HTML to ``OUT/html/NAME.html``; with
``--book``, once every notebook ran, ``scripts/build_book.py`` builds the book into ``OUT/book/``
from those copies (never executing them again).  The kernel
is always ipykernel on *this* interpreter (run it with the venv's python), whatever kernelspecs
are registered elsewhere on the machine.  A failing cell raises :class:`NotebookExecutionError`,
which names the notebook and the cell and carries the cell's source and traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from queue import Empty

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
CELL_TIMEOUT_S = 1800
POLL_SLICE_S = 1.0  # longest wait on a kernel socket before looking again (see SlicedPollChannel)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes (IPython colours its tracebacks)."""
    return _ANSI.sub("", text)


@dataclass(eq=False)
class NotebookExecutionError(Exception):
    """A notebook stopped at a cell; ``str()`` gives a report a reader can act on."""

    notebook: Path
    cell_index: int  # 1-based position among all cells, as a reader counts them
    source: str
    error: str
    traceback: str
    partial: Path | None = None  # executed copy up to the failing cell, if written

    def __str__(self) -> str:
        lines = [f"notebook {self.notebook.name} failed at cell {self.cell_index}: {self.error}",
                 "--- cell source ---", self.source.rstrip(),
                 "--- traceback ---", self.traceback.rstrip() or "(none)"]
        if self.partial:
            lines.append(f"--- outputs up to the failure: {self.partial}")
        return "\n".join(lines)


def discover(paths: list[Path] | None = None, only: list[str] | None = None) -> list[Path]:
    """Notebooks to run, sorted: ``NN_*.ipynb`` in each directory, files as given.

    ``only`` keeps notebooks whose stem equals or starts with one of the names (``01`` or
    ``01_two_layer_networks_are_convex``).
    """
    found: list[Path] = []
    for p in paths or [NOTEBOOK_DIR]:
        p = Path(p)
        if p.is_dir():
            found.extend(sorted(p.glob(NOTEBOOK_GLOB)))
        elif p.suffix == ".ipynb" and p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"not a notebook or a directory: {p}")
    if only:
        found = [nb for nb in found if any(nb.stem == o or nb.stem.startswith(o) for o in only)]
    return found


def kernel_env(fast: bool, data_dir: Path | None = None) -> dict[str, str]:
    """The kernel's environment: ours, with ``CVXATTN_FAST`` set or removed and the data root."""
    env = dict(os.environ)
    env.pop("CVXATTN_FAST", None)
    if fast:
        env["CVXATTN_FAST"] = "1"
    if data_dir is not None:
        env["CVXATTN_DATA"] = str(data_dir)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiets a debugger warning on stderr
    return env


def _kernel_manager_class():
    """An AsyncKernelManager whose only kernelspec, ``python3``, is ipykernel on sys.executable,
    and whose client polls its sockets in short slices (see ``SlicedPollChannel``)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets import Type, default

    class SlicedPollChannel(AsyncZMQSocketChannel):
        """``get_msg`` that waits in slices of at most POLL_SLICE_S seconds.

        The asyncio zmq socket now and then misses the wake-up for a message that has already
        arrived; its poll then only sees the message when its timeout ends.  nbclient waits for a
        cell's reply with the whole cell timeout, so a missed wake-up stalled a run for exactly
        that long (seen here: 45, 90, 300 s, with ipykernel 7.4 and 6.31 alike).  Short slices
        bound the stall to POLL_SLICE_S.
        """

        async def get_msg(self, timeout=None):
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = POLL_SLICE_S if deadline is None else deadline - time.monotonic()
                try:
                    return await super().get_msg(timeout=max(0.0, min(left, POLL_SLICE_S)))
                except Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise

    class SlicedPollClient(AsyncKernelClient):
        shell_channel_class = Type(SlicedPollChannel)
        iopub_channel_class = Type(SlicedPollChannel)
        stdin_channel_class = Type(SlicedPollChannel)
        control_channel_class = Type(SlicedPollChannel)

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_ksm(self):
            return KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)

        @default("client_factory")
        def _default_client_factory(self):
            return SlicedPollClient

    return ThisPythonKernelManager


def execute_notebook(path: Path, out_dir: Path | None = None, *, fast: bool = False,
                     data_dir: Path | None = None, html: bool = True,
                     timeout: int = CELL_TIMEOUT_S):
    """Execute one notebook in its own directory; return the executed ``NotebookNode``.

    With ``out_dir`` the executed copy is written to ``out_dir/notebooks/`` (also when a cell
    fails, to show the outputs so far) and, if ``html``, the HTML to ``out_dir/html/``.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    current = {"index": -1}

    def on_cell_start(cell, cell_index):
        current["index"] = cell_index

    client = NotebookClient(
        nb, timeout=timeout, startup_timeout=180, kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(), record_timing=False,
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no "TCP without encryption" noise
        store_widget_state=True, resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=on_cell_start,
    )
    try:
        client.execute(env=kernel_env(fast, data_dir))
    except (CellControlSignal, RuntimeError, TimeoutError, AssertionError) as exc:
        # a cell raised or timed out (CellControlSignal); the kernel died or never started
        # (RuntimeError, TimeoutError); no kernel_info reply in time (nbclient's assert)
        partial = _write(nb, path, out_dir, html=False) if out_dir else None
        raise _describe(path, nb, current["index"], exc, partial) from None
    if out_dir is not None:
        _write(nb, path, out_dir, html=html)
    return nb


def _describe(path: Path, nb, index: int, exc: Exception, partial) -> NotebookExecutionError:
    """Turn an nbclient exception into a report naming the cell."""
    if index < 0:
        return NotebookExecutionError(path, 0, "(before the first cell: kernel start-up)",
                                      f"{type(exc).__name__}: {exc}", "", partial)
    cell = nb.cells[index]
    tb, error = "", f"{type(exc).__name__}"
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            tb = strip_ansi("\n".join(out.get("traceback", [])))
            error = f"{out.get('ename')}: {out.get('evalue')}"
    if not tb:  # timeouts and dead kernels leave no error output
        error = strip_ansi(str(exc)).strip().splitlines()[0] if str(exc).strip() else error
        tb = strip_ansi(str(exc))
    return NotebookExecutionError(path, index + 1, cell.source, error, tb, partial)


def _write(nb, path: Path, out_dir: Path, html: bool) -> Path:
    """Write the executed notebook (and its HTML) under ``out_dir``; return the notebook path."""
    import nbformat

    out_dir = Path(out_dir)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    target = out_dir / "notebooks" / path.name
    nbformat.write(nb, target)
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        (out_dir / "html").mkdir(parents=True, exist_ok=True)
        (out_dir / "html" / f"{path.stem}.html").write_text(body, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line: execute notebooks in order, print a line each, summarise failures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path,
                    help="notebook files or directories (default: notebooks/)")
    ap.add_argument("--fast", action="store_true", help="set CVXATTN_FAST=1 (small sizes)")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run only notebooks whose name is or starts with NAME (repeatable)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "build",
                    help="output root for notebooks/ and html/ (default: build/)")
    ap.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    ap.add_argument("--book", action="store_true",
                    help="then build the course book into OUT/book/ (scripts/build_book.py)")
    args = ap.parse_args(argv)

    notebooks = discover(args.paths, args.only)
    if not notebooks:
        where = ", ".join(str(p) for p in args.paths or [NOTEBOOK_DIR])
        only = f" with --only {' '.join(args.only)}" if args.only else ""
        print(f"no notebooks {NOTEBOOK_GLOB} in {where}{only}", file=sys.stderr)
        return 1
    mode = "fast" if args.fast else "full"
    print(f"executing {len(notebooks)} notebook(s) in {mode} mode with {sys.executable}",
          flush=True)
    failures = []
    t_all = time.perf_counter()
    for i, nb_path in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {nb_path.name} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        try:
            execute_notebook(nb_path, args.out, fast=args.fast, timeout=args.timeout)
        except NotebookExecutionError as err:
            print(f"FAILED after {time.perf_counter() - t0:.1f} s", flush=True)
            print(err, file=sys.stderr, flush=True)
            failures.append(err)
            continue
        print(f"ok ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"done in {time.perf_counter() - t_all:.1f} s; executed notebooks in "
          f"{args.out / 'notebooks'}, HTML in {args.out / 'html'}", flush=True)
    if failures:
        print(f"{len(failures)} notebook(s) failed:", file=sys.stderr)
        for err in failures:
            print(f"  {err.notebook.name}: cell {err.cell_index}: {err.error}", file=sys.stderr)
        if args.book:
            print("the course book was not built: it needs every notebook executed", file=sys.stderr)
        return 1
    if args.book:
        if args.only or args.paths:
            print("the course book was not built: it is built from all of notebooks/, so run "
                  "without --only and paths (or scripts/build_book.py on copies executed before)",
                  flush=True)
            return 0
        return build_book(args.out)
    return 0


def build_book(out: Path) -> int:
    """Build the course book from ``out/notebooks`` into ``out/book`` (scripts/build_book.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_book", Path(__file__).with_name("build_book.py"))
    book = sys.modules.setdefault("build_book", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(book)
    return book.main(["--notebooks", str(out / "notebooks"), "--out", str(out / "book")])


if __name__ == "__main__":
    sys.exit(main())
