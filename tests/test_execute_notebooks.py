"""The notebook runner behind scripts/main.sh: outputs, modes and failure reports."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from queue import Empty

import nbformat
import pytest
from jupyter_client.channels import AsyncZMQSocketChannel


def write_notebook(path, *sources):
    """A notebook with a title cell and one code cell per source."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem[:2]} · test")]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_discover_sorts_and_filters(execnb, tmp_path):
    for name in ["02_b", "01_a", "10_c", "notes"]:
        write_notebook(tmp_path / f"{name}.ipynb")
    found = execnb.discover([tmp_path])
    assert [p.stem for p in found] == ["01_a", "02_b", "10_c"]
    assert [p.stem for p in execnb.discover([tmp_path], only=["02", "10_c"])] == ["02_b", "10_c"]
    with pytest.raises(FileNotFoundError):
        execnb.discover([tmp_path / "nope.ipynb"])


def test_kernel_env_sets_or_clears_fast_mode(execnb, monkeypatch, tmp_path):
    monkeypatch.setenv("CVXATTN_FAST", "1")
    assert "CVXATTN_FAST" not in execnb.kernel_env(fast=False)
    env = execnb.kernel_env(fast=True, data_dir=tmp_path)
    assert env["CVXATTN_FAST"] == "1" and env["CVXATTN_DATA"] == str(tmp_path)


def test_main_writes_outputs_and_names_the_failing_cell(execnb, tmp_path, capsys):
    src = tmp_path / "nbs"
    write_notebook(src / "01_ok.ipynb",
                   "import os, sys\nprint(os.environ.get('CVXATTN_FAST'), sys.executable)")
    write_notebook(src / "02_bad.ipynb", "x = 1", "y = x / 0")
    out = tmp_path / "build"

    rc = execnb.main(["--fast", "--book", "--out", str(out), str(src)])

    captured = capsys.readouterr()
    assert rc == 1
    assert "the course book was not built" in captured.err and not (out / "book").exists()
    assert "[1/2] 01_ok.ipynb ... ok" in captured.out
    assert "[2/2] 02_bad.ipynb ... FAILED" in captured.out
    assert "02_bad.ipynb failed at cell 3: ZeroDivisionError" in captured.err
    assert "y = x / 0" in captured.err and "Traceback" in captured.err
    assert (out / "html" / "01_ok.html").exists()
    executed = nbformat.read(out / "notebooks" / "01_ok.ipynb", as_version=4)
    text = executed.cells[1].outputs[0]["text"]
    assert text.split() == ["1", sys.executable], "fast mode or the kernel's python is wrong"
    assert (out / "notebooks" / "02_bad.ipynb").exists(), "partial outputs of a failure are kept"
    assert not (out / "html" / "02_bad.html").exists()


def run_coroutine(coro):
    """asyncio.run in a fresh thread: another test (Playwright) may leave a loop running here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_kernel_client_polls_in_short_slices(execnb, monkeypatch):
    """A wake-up the zmq socket misses costs at most one slice, not the whole cell timeout."""
    km = execnb._kernel_manager_class()(kernel_name="python3")
    channel_class = km.client().shell_channel_class
    asked = []

    async def fake_get_msg(self, timeout=None):
        asked.append(timeout)
        if len(asked) < 4:
            raise Empty
        return {"msg": "late"}

    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", fake_get_msg)
    channel = object.__new__(channel_class)
    assert run_coroutine(channel.get_msg(timeout=1800)) == {"msg": "late"}
    assert len(asked) == 4 and max(asked) <= execnb.POLL_SLICE_S

    async def never(self, timeout=None):
        await asyncio.sleep(timeout)
        raise Empty

    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", never)
    with pytest.raises(Empty):
        run_coroutine(channel.get_msg(timeout=0.05))
