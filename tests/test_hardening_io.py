"""Hardening of everything the CIFAR-100 pipeline reads and writes (issue 13, points 1, 2, 4, 5, 6 and
the command-line cases of 7): a restricted unpickler for CIFAR-100 files, safe weight loading, escaped
widget HTML, an HTTP probe that honours proxies, crash-safe and resumable results, and a cache that
two jobs can share.  Everything runs on the CPU, offline (only loopback sockets), in seconds."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import socket
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cvxattn_lib import cifar
from cvxattn_lib.cifar import backbone as bbmod
from cvxattn_lib.cifar import cache as cmod
from cvxattn_lib.cifar import cli
from cvxattn_lib.cifar import data as dmod
from cvxattn_lib.cifar import heads as hmod
from cvxattn_lib.cifar import net
from cvxattn_lib.cifar.cli import format_table, load_results, main

SMALL = "test_vit"  # a 0.4 M-parameter timm ViT: fast on a CPU
LIB = Path(cifar.__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture
def offline(monkeypatch):
    """No hub, no cached weights: the backbone gets random weights without touching the network."""
    monkeypatch.setattr(bbmod, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(bbmod, "_cached_weights", lambda cfg: None)


# --------------------------------------------------------------------------------------------------
# 1. CIFAR-100 files: read once, md5 on those bytes, restricted unpickler; safe weights everywhere
# --------------------------------------------------------------------------------------------------

class RunsCommand:
    """A pickle that, loaded by an unrestricted unpickler, runs ``fn(arg)`` (here: creates a file)."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.fixture
def folder(tmp_path):
    """A small CIFAR-100-format folder and its manifest (a dict of md5s)."""
    root = tmp_path / "data"
    splits = {"train": cifar.synthetic_cifar100("train", 30, 1),
              "test": cifar.synthetic_cifar100("test", 10, 1)}
    sums = cifar.write_cifar_folder(root, splits)
    return root, sums, splits


def _plant(root: Path, sums: dict, name: str, obj=None, payload: bytes | None = None) -> dict:
    """Replace ``name`` by ``obj`` pickled (or raw ``payload``) and return a manifest that vouches for it:
    the md5 guard is exactly what a crafted ``--manifest`` defeats."""
    path = root / "cifar-100-python" / name
    path.write_bytes(pickle.dumps(obj) if payload is None else payload)
    return dict(sums, **{name: hashlib.md5(path.read_bytes()).hexdigest()})


def _good_raw(split) -> dict:
    n = len(split)
    return {b"data": split.images.reshape(n, -1).copy(), b"fine_labels": [int(v) for v in split.labels],
            b"coarse_labels": [int(v) for v in split.coarse], b"filenames": [b"x.png"] * n}


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "nested"])
def test_a_malicious_pickle_is_refused_without_running_anything(folder, tmp_path, payload):
    root, sums, splits = folder
    marker = tmp_path / "PWNED"
    if payload == "os.system":
        evil = RunsCommand(os.system, f"touch {marker}")
    elif payload == "builtins.eval":
        evil = RunsCommand(eval, f"open({str(marker)!r}, 'w').close()")
    else:  # hidden inside an otherwise well-formed CIFAR dict
        evil = {**_good_raw(splits["train"]), b"data": RunsCommand(os.system, f"touch {marker}")}
    manifest = _plant(root, sums, "train", evil)
    with pytest.raises(cifar.CifarDataError, match=r"-python/train could not be read .* not allowed"):
        cifar.load_cifar100("train", root, manifest=manifest, download_missing=False)
    assert not marker.exists()


def test_the_file_is_hashed_and_unpickled_from_the_same_bytes(folder, tmp_path, monkeypatch):
    """A swap between the md5 check and the load (time-of-check to time-of-use) changes nothing: the
    bytes that were hashed are the bytes that are unpickled."""
    root, sums, splits = folder
    path = root / "cifar-100-python" / "train"
    marker = tmp_path / "PWNED"
    evil = pickle.dumps(RunsCommand(os.system, f"touch {marker}"))
    real_md5 = hashlib.md5

    class SwapAfterHashing:
        def __init__(self, *args):
            self.h = real_md5(*args)

        def update(self, block):
            self.h.update(block)

        def hexdigest(self):
            digest = self.h.hexdigest()
            if path.read_bytes() != evil:  # the attacker swaps the file right after it is checked
                path.write_bytes(evil)
            return digest

    monkeypatch.setattr(dmod, "hashlib", SimpleNamespace(md5=SwapAfterHashing))
    got = cifar.load_cifar100("train", root, manifest=sums, download_missing=False)
    np.testing.assert_array_equal(got.images, splits["train"].images)  # what was checked, not the swap
    assert not marker.exists()


@pytest.mark.parametrize("case, match", [
    ("top-level list", "pickled list, not the dict"),
    ("float data", r"b'data' must be a uint8 array \(N, 3072\)"),
    ("label out of range", r"b'fine_labels' must lie in \[0, 100\)"),
    ("coarse out of range", r"b'coarse_labels' must lie in \[0, 20\)"),
    ("too few labels", r"b'fine_labels' must be 30 integers"),
    ("missing key", r"lacks the key b'coarse_labels'"),
    ("truncated", "could not be read as a CIFAR-100 pickle"),
    ("meta without names", r"meta lacks the key b'fine_label_names'"),
])
def test_wrong_pickle_structure_is_a_cifar_data_error_naming_the_file(folder, case, match):
    root, sums, splits = folder
    raw = _good_raw(splits["train"])
    name, obj, payload = "train", raw, None
    if case == "top-level list":
        obj = [raw]
    elif case == "float data":
        raw[b"data"] = raw[b"data"].astype(np.float64)
    elif case == "label out of range":
        raw[b"fine_labels"][3] = 100
    elif case == "coarse out of range":
        raw[b"coarse_labels"][0] = -1
    elif case == "too few labels":
        raw[b"fine_labels"] = raw[b"fine_labels"][:-1]
    elif case == "missing key":
        del raw[b"coarse_labels"]
    elif case == "truncated":
        payload = pickle.dumps(raw)[:-50]
    else:
        name, obj = "meta", {b"coarse_label_names": []}
    manifest = _plant(root, sums, name, obj, payload)
    with pytest.raises(cifar.CifarDataError, match=match) as err:
        cifar.load_cifar100("train", root, manifest=manifest, download_missing=False)
    assert str(root / "cifar-100-python" / name) in str(err.value)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_pickle_protocol_of_the_real_format_still_reads(folder, protocol):
    root, sums, splits = folder
    payload = pickle.dumps(_good_raw(splits["train"]), protocol=protocol)
    manifest = _plant(root, sums, "train", payload=payload)
    got = cifar.load_cifar100("train", root, manifest=manifest, download_missing=False)
    np.testing.assert_array_equal(got.images, splits["train"].images)
    np.testing.assert_array_equal(got.labels, splits["train"].labels)


def test_malformed_manifests_name_the_file(folder, tmp_path):
    root, sums, _ = folder
    bad = tmp_path / "manifest.json"
    bad.write_text('{"train": "abc", ')  # truncated JSON
    with pytest.raises(ValueError, match=f"manifest {re.escape(str(bad))} is not valid JSON"):
        cifar.load_cifar100("train", root, manifest=bad, download_missing=False)
    bad.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ValueError, match=f"manifest {re.escape(str(bad))} is not valid JSON"):
        cifar.load_cifar100("train", root, manifest=bad, download_missing=False)
    bad.write_text(json.dumps(dict(sums, test="not-an-md5")))
    with pytest.raises(ValueError, match=f"manifest {re.escape(str(bad))}: every md5 must be 32 hexadecimal"):
        cifar.load_cifar100("train", root, manifest=bad, download_missing=False)


def test_cli_checks_the_manifest_before_any_work(tmp_path, capsys):
    bad = tmp_path / "sums.json"
    bad.write_text("{not json")
    root = tmp_path / "root"
    root.mkdir()
    for command in ("extract", "train"):
        assert main([command, "--data-root", str(root), "--manifest", str(bad), "--backbone", SMALL]) == 2
        assert f"manifest {bad} is not valid JSON" in capsys.readouterr().err
    assert list(root.iterdir()) == []  # the data are missing, but the bad manifest is not ignored


def test_no_unrestricted_loader_anywhere_in_the_library():
    """Every file the library loads: NumPy without pickle, torch with weights_only=True, pickles
    only through the CIFAR unpickler (a grep over the source, so a new loader cannot slip in)."""
    offenders = []
    for path in LIB.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"(np|numpy)\.load\(([^()]|\([^()]*\))*\)", text):
            if "allow_pickle=False" not in m.group(0):
                offenders.append(f"{path.name}: {m.group(0)}")
        for m in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in m.group(0):
                offenders.append(f"{path.name}: {m.group(0)}")
        for m in re.finditer(r"pickle\.(load|loads|Unpickler)\b", text):
            line = text[:m.start()].count("\n") + 1
            if not (path.name == "data.py" and m.group(0) == "pickle.Unpickler"):
                offenders.append(f"{path.name}:{line}: {m.group(0)}")
    assert offenders == []


@pytest.mark.slow
def test_cached_weights_load_without_pickle_or_are_refused(tmp_path, monkeypatch):
    """Weights from the local cache: safetensors load as pretrained; a .bin whose pickle asks for a
    global is refused by torch.load(weights_only=True), so the backbone falls back to random weights
    with the reason in the warning, and nothing runs."""
    from safetensors.torch import save_file

    monkeypatch.setattr(bbmod, "_hub_reachable", lambda *a, **k: False)
    ref = bbmod._random_model(SMALL, seed=5)
    good = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(good))
    monkeypatch.setattr(bbmod, "_cached_weights", lambda cfg: str(good))
    model, pretrained = bbmod.create_model(SMALL, pretrained=True)
    assert pretrained
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)

    marker = tmp_path / "PWNED"
    evil = tmp_path / "pytorch_model.bin"
    torch.save({"w": RunsCommand(os.system, f"touch {marker}")}, evil)
    monkeypatch.setattr(bbmod, "_cached_weights", lambda cfg: str(evil))
    with pytest.warns(cifar.PretrainedUnavailableWarning, match="RANDOM weights"):
        _, pretrained = bbmod.create_model(SMALL, pretrained=True)
    assert not pretrained and not marker.exists()


# --------------------------------------------------------------------------------------------------
# 2. Names from a results file are escaped in widget HTML
# --------------------------------------------------------------------------------------------------

def _row(head, beta, top1=0.5, status="ok", **kw):
    row = {"head": head, "beta": beta, "top1": top1, "top5": min(1.0, top1 + 0.2), "params": 10, "units": 2,
           "train_time_s": 0.1, "device": "cpu", "convex": True, "rel_gap": 1e-7, "gap_bound": 1e-6,
           "status": status}
    return dict(row, **kw)


def _results(rows, **kw):
    out = {"format": cli.RESULTS_FORMAT, "rows": rows, "device": "cpu",
           "heads": sorted({r["head"] for r in rows}), "betas": sorted({r["beta"] for r in rows}),
           "data": {"source": "synthetic stand-in", "n_train": 24, "n_test": 12},
           "backbone": {"name": "random tokens", "pretrained": False, "tokens": 4, "features": 3}}
    return dict(out, **kw)


def test_widget_status_escapes_head_names_from_a_results_file():
    import matplotlib

    matplotlib.use("Agg")
    import cvxattn_lib.widgets as widgets

    evil = "<script>alert(1)</script>"
    rows = [_row(evil, 0.1, 0.9), _row(evil, 1.0, 0.8), _row("linear", 0.1, 0.3), _row("linear", 1.0, 0.2),
            {"head": "mlp_relu", "beta": 0.1, "status": "failed", "error": "out of memory: <b>x</b>"}]
    ex = widgets.cifar_sweep_explorer(_results(rows), beta=0.1)
    assert "<script>" not in ex.status.value
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ex.status.value
    assert "mlp_relu" not in ex.status.value  # the failed row has no numbers to show


# --------------------------------------------------------------------------------------------------
# 4. The network probe goes through the HTTP stack (proxies honoured) and fails fast offline
# --------------------------------------------------------------------------------------------------

class FakeProxy:
    """A loopback 'proxy' that records the first line of each request and answers ``reply``."""

    def __init__(self, reply: bytes):
        self.reply, self.lines = reply, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                self.lines.append(head.split(b"\r\n")[0].decode())
                conn.sendall(self.reply)

    def close(self):
        self.sock.close()


@pytest.fixture
def no_proxy_env(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                "NO_PROXY", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_probe_goes_through_https_proxy(no_proxy_env):
    proxy = FakeProxy(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    try:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        # the proxy refuses the tunnel: unreachable, but the request went to the proxy
        assert net.reachable("https://www.cs.toronto.edu/~kriz/x.tar.gz", timeout=3) is False
        assert [line[:-1] for line in proxy.lines] == ["CONNECT www.cs.toronto.edu:443 HTTP/1."]
        assert bbmod._hub_reachable(timeout=3) is False
        assert proxy.lines[-1][:-1] == "CONNECT huggingface.co:443 HTTP/1."
        # the CIFAR download asks the same probe, through the same proxy, and gives up plainly
        with pytest.warns(cifar.DataUnavailableWarning, match="HTTPS_PROXY"):
            assert dmod.download(Path("/nonexistent")) is False
        assert proxy.lines[-1][:-1] == "CONNECT www.cs.toronto.edu:443 HTTP/1."
    finally:
        proxy.close()


def test_probe_through_http_proxy_that_answers_is_reachable(no_proxy_env):
    proxy = FakeProxy(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    try:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        assert net.reachable("http://example.invalid/probe", timeout=3) is True  # only the proxy resolves it
        assert proxy.lines == ["HEAD http://example.invalid/probe HTTP/1.1"]
    finally:
        proxy.close()


def test_probe_without_network_returns_false_quickly(no_proxy_env):
    port = _closed_port()
    t0 = time.perf_counter()
    assert net.reachable(f"https://127.0.0.1:{port}/", timeout=2) is False  # connection refused
    no_proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")  # a proxy that is down
    assert net.reachable("https://huggingface.co", timeout=2) is False
    assert time.perf_counter() - t0 < 3
    silent = socket.socket()  # accepts the connection and never answers: the timeout bounds the wait
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        no_proxy_env.delenv("HTTPS_PROXY")
        t0 = time.perf_counter()
        assert net.reachable(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.5) is False
        assert time.perf_counter() - t0 < 2
    finally:
        silent.close()


def test_probe_rejects_bad_arguments():
    with pytest.raises(ValueError, match="url must be an http"):
        net.reachable("ftp://x.org")
    with pytest.raises(ValueError, match="timeout must be a finite number > 0"):
        net.reachable("https://x.org", timeout=0)


# --------------------------------------------------------------------------------------------------
# 5. Results: every row written as it finishes, resumable, failed heads recorded, options checked first
# --------------------------------------------------------------------------------------------------

def _prepared(n_train=40, n_test=20, s=4, d=3, classes=5, seed=0, key="k"):
    """What prepare_features returns, without a backbone: random tokens with learnable labels."""
    rng = np.random.default_rng(seed)
    ytr, yte = rng.integers(0, classes, n_train), rng.integers(0, classes, n_test)
    centers = rng.standard_normal((classes, d))
    Xtr = (centers[ytr][:, None] + 0.3 * rng.standard_normal((n_train, s, d))).astype(np.float16)
    Xte = (centers[yte][:, None] + 0.3 * rng.standard_normal((n_test, s, d))).astype(np.float16)

    caches = {"train": _Cache(Xtr, ytr, f"{key}-train"), "test": _Cache(Xte, yte, f"{key}-test")}
    bb = SimpleNamespace(name="tokens", pretrained=False, transform="none", device=torch.device("cpu"))
    return {"root": Path("."), "backbone": bb, "caches": caches, "source": "synthetic stand-in"}


class _Cache:
    def __init__(self, X, y, key):
        self.features, self.labels, self.key, self.meta = X, y, key, {"version": "test"}

    def __len__(self):
        return len(self.labels)


class Crash(BaseException):
    """Stands for a killed process (not an Exception: nothing may catch it)."""


def _counting_train_head(monkeypatch, fail=None, crash_at=None, classes=None):
    """Wrap heads.train_head: count calls, raise ``fail[head]`` for some heads, Crash at call ``crash_at``."""
    real, calls = hmod.train_head, []

    def wrapped(name, *args, **kw):
        calls.append((name, args[4]))
        if crash_at is not None and len(calls) == crash_at:
            raise Crash
        if fail and name in fail:
            raise fail[name]
        if classes is not None:
            kw["classes"] = classes
        return real(name, *args, **kw)

    monkeypatch.setattr(hmod, "train_head", wrapped)
    return calls


GRID = dict(heads=["linear", "mlp_relu"], betas=[0.1, 1.0], epochs=2, batch_size=16, width=8, progress=False,
            verbose=False)


def test_rows_are_written_as_they_finish_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "results" / "run.json"
    calls = _counting_train_head(monkeypatch, crash_at=3, classes=5)
    with pytest.raises(Crash):
        cli.run_heads(_prepared(), out=out, **GRID)
    saved = load_results(out)  # the two rows done before the crash are on disk
    assert [(r["head"], r["beta"]) for r in saved["rows"]] == [("linear", 0.1), ("linear", 1.0)]
    assert saved["complete"] is False and saved["failed"] == 0
    assert not list(out.parent.glob("*.tmp"))  # no temporary file left behind
    assert "PARTIAL RESULTS: 2 of 4" in format_table(saved)

    calls = _counting_train_head(monkeypatch, classes=5)
    res = cli.run_heads(_prepared(), out=out, **dict(GRID, verbose=True))
    assert "resuming" in capsys.readouterr().out
    assert calls == [("mlp_relu", 0.1), ("mlp_relu", 1.0)]  # only the rows not yet done
    assert res["complete"] is True and len(res["rows"]) == 4
    assert res["rows"][:2] == saved["rows"]  # kept as they were
    assert load_results(out)["rows"] == json.loads(json.dumps(res["rows"]))
    calls.clear()
    cli.run_heads(_prepared(), out=out, **GRID)  # everything done: nothing trained
    assert calls == []
    cli.run_heads(_prepared(), out=out, resume=False, **GRID)  # --no-resume trains again
    assert len(calls) == 4
    with pytest.raises(ValueError, match=r"holds results of other options \(epochs: 2 there, 3 now\)"):
        cli.run_heads(_prepared(), out=out, **dict(GRID, epochs=3))
    with pytest.raises(ValueError, match="train_cache"):  # other data (another cache) never mixes in
        cli.run_heads(_prepared(key="other"), out=out, **GRID)


def test_a_failing_head_is_a_failed_row_and_the_grid_goes_on(tmp_path, monkeypatch):
    out = tmp_path / "run.json"
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 29.00 GiB")
    calls = _counting_train_head(monkeypatch, fail={"mlp_relu": oom}, classes=5)
    res = cli.run_heads(_prepared(), out=out, **GRID)
    assert len(calls) == 4 and res["complete"] is True and res["failed"] == 2
    failed = [r for r in res["rows"] if r["status"] == "failed"]
    assert [r["head"] for r in failed] == ["mlp_relu", "mlp_relu"]
    assert failed[0]["error"].startswith("out of memory: CUDA out of memory")
    table = format_table(load_results(out))
    assert "FAILED: out of memory" in table and "2 row(s) FAILED" in table
    md = format_table(load_results(out), markdown=True)
    assert "| mlp_relu | 0.1 | FAILED: out of memory" in md and "**2 row(s) FAILED" in md
    # a rerun retries only the failed rows
    calls = _counting_train_head(monkeypatch, fail={"mlp_relu": RuntimeError("still broken")}, classes=5)
    res = cli.run_heads(_prepared(), out=out, **GRID)
    assert calls == [("mlp_relu", 0.1), ("mlp_relu", 1.0)]
    assert [r["error"] for r in res["rows"] if r["status"] == "failed"] == ["RuntimeError: still broken"] * 2


@pytest.mark.parametrize("argv, match", [
    (["--solver-option", "max_itr=5"], r"unknown option\(s\) 'max_itr'"),
    (["--method", "adam"], "--method must be one of fista, burer_monteiro, auto, got 'adam'"),
    (["--solver-option", "tol=-1"], "--solver-option tol must be a finite number > 0"),
    (["--solver-option", "shrink=1.5"], r"--solver-option shrink must lie in \(0, 1\)"),
    (["--solver-option", "dtype=float16"], "--solver-option dtype must be one of"),
    (["--solver-option", "max_iter=0"], "--solver-option max_iter must be an integer >= 1"),
    (["--solver-option", "seed=3"], "--solver-option seed is set by the heads themselves; use --seed"),
    (["--solver-option", "tol=1e-3", "--solver-option", "tol=1e-4"], "--solver-option tol is given twice"),
    (["--device", "cuda:99x"], "device='cuda:99x'"),
])
def test_every_option_is_checked_before_any_work(tmp_path, capsys, argv, match, offline):
    rc = main(["train", "--data-root", str(tmp_path), "--heads", "linear", "--backbone", SMALL,
               "--no-download", *argv])
    assert rc == 2
    assert re.search(match, capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []  # no data, no cache, no results: nothing was started


@pytest.mark.parametrize("argv, match", [
    (["--threads", "0"], "argument --threads: must be an integer >= 1, got '0'"),
    (["--threads", "-2"], "argument --threads: must be an integer >= 1, got '-2'"),
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1"),
    (["--lr", "nan"], "argument --lr: must be a finite number > 0"),
    (["--batch-size", "x"], "argument --batch-size: must be an integer >= 1"),
    (["--seed", "-1"], r"argument --seed: must be an integer in \[0, 2\*\*32 - 1\]"),
    (["--betas", "0.1,0.1"], "argument --betas: betas must not repeat"),
])
def test_bad_numbers_on_the_command_line_name_the_option(tmp_path, capsys, argv, match):
    assert main(["train", "--data-root", str(tmp_path), *argv]) == 2
    assert re.search(match, capsys.readouterr().err)


def test_out_that_is_not_a_results_file_is_never_overwritten(tmp_path, capsys):
    precious = tmp_path / "notes.json"
    precious.write_text('{"mine": 1}')
    assert main(["train", "--data-root", str(tmp_path), "--heads", "linear", "--out", str(precious)]) == 2
    assert "--out " + str(precious) + " is not a cvxattn CIFAR-100 results file" in capsys.readouterr().err
    assert precious.read_text() == '{"mine": 1}'
    assert main(["train", "--data-root", str(tmp_path), "--heads", "linear", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_resumes_the_unfinished_file_and_reports_failures(tmp_path, monkeypatch, capsys, offline):
    """The command line end to end on the stand-in: a crash mid-grid, the same command again resumes
    the same file (no --out needed), a failing head gives exit status 1 and a FAILED row."""
    args = ["train", "--data-root", str(tmp_path), "--backbone", SMALL, "--no-pretrained", "--subset", "30",
            "--test-subset", "10", "--no-download", "--no-progress", "--threads", "1", "--batch-size", "10",
            "--heads", "linear,mlp_relu", "--betas", "0.1,1", "--epochs", "2", "--width", "8",
            "--reduce-dim", "4"]
    warnings.simplefilter("ignore", cifar.DataUnavailableWarning)
    calls = _counting_train_head(monkeypatch, crash_at=2)
    with pytest.raises(Crash):
        main(args)
    files = list((tmp_path / "results").glob("*.json"))
    assert len(files) == 1 and len(load_results(files[0])["rows"]) == 1
    capsys.readouterr()
    calls = _counting_train_head(monkeypatch, fail={"mlp_relu": ValueError("boom")})
    assert main(args) == 1  # finished, but with failed rows
    out = capsys.readouterr().out
    assert f"resuming {files[0]}: 1 of 4" in out and "FAILED: ValueError: boom" in out
    assert calls == [("linear", 1.0), ("mlp_relu", 0.1), ("mlp_relu", 1.0)]
    assert list((tmp_path / "results").glob("*.json")) == files  # the same file, completed
    assert main(["report", "--data-root", str(tmp_path)]) == 0
    assert "2 row(s) FAILED" in capsys.readouterr().out


def test_format_table_shows_partial_and_odd_results_and_rejects_non_results():
    rows = [_row("linear", 0.1, convex=False, rel_gap=None, units=None),
            _row("mixer", 0.1, top1=float("nan"))]
    res = _results(rows, heads=["linear", "mixer"], betas=[0.1, 1.0], complete=False)
    del res["data"]["n_test"], res["backbone"]["tokens"], res["rows"][1]["top5"]
    text = format_table(res)
    assert "PARTIAL RESULTS: 2 of 4" in text and "? test images" in text
    assert "nan%" in text and "n/a (nc)" in text
    lean = format_table({"rows": [{"head": "linear", "beta": 0.1}]})  # the least a row can be
    assert "linear" in lean and "?" in lean
    for bad, match in [([], "results must be a results dict, got list"),
                       ({"rows": "x"}, "results has no list of rows"),
                       ({"rows": [{"beta": 1.0}]}, "results: row 0 is not a results row"),
                       ({"rows": [{"head": "linear", "beta": "1"}]}, "results: row 0 is not a results row")]:
        with pytest.raises(ValueError, match=match):
            format_table(bad)


def test_load_results_checks_rows_and_names_the_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"format": cli.RESULTS_FORMAT, "rows": [{"head": "linear"}]}))
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: row 0 is not a results row"):
        load_results(path)
    path.write_text('{"format": ')
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is not valid JSON"):
        load_results(path)


def test_json_is_never_written_with_nan(tmp_path):
    path = tmp_path / "x.json"
    cmod.atomic_write_json(path, {"gap": float("nan"), "up": float("inf"), "down": -float("inf"),
                                  "np": np.float32(2.5), "arr": np.arange(2), "t": (1, 2)})

    def refuse(name):
        raise AssertionError(f"{name} in the JSON")

    got = json.loads(path.read_text(), parse_constant=refuse)  # strict JSON: no NaN / Infinity tokens
    assert got == {"gap": "nan", "up": "inf", "down": "-inf", "np": 2.5, "arr": [0, 1], "t": [1, 2]}
    res = _results([_row("linear", 0.1, objective=float("nan"))])
    cli.save_results(res, tmp_path / "r.json")
    assert load_results(tmp_path / "r.json")["rows"][0]["objective"] == "nan"


# --------------------------------------------------------------------------------------------------
# 6. The cache: unique temporary files, a lock, labels checksummed, finite features, checked metadata
# --------------------------------------------------------------------------------------------------

def test_concurrent_atomic_writes_use_their_own_temporary_files(tmp_path, monkeypatch):
    """Another writer of the same file between this one's write and rename (two jobs, one data root):
    each has its own temporary file, so both renames succeed and the file is always whole."""
    path = tmp_path / "progress.json"
    real_replace, seen = os.replace, []

    def replace_with_a_rival(src, dst):
        seen.append(Path(src).name)
        if len(seen) == 1:  # the rival writes the same file right now
            cmod.atomic_write_json(path, {"writer": "rival"})
        return real_replace(src, dst)

    monkeypatch.setattr(cmod.os, "replace", replace_with_a_rival)
    cmod.atomic_write_json(path, {"writer": "first"})
    assert len(set(seen)) == 2  # two distinct temporary names
    assert json.loads(path.read_text()) == {"writer": "first"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]


def _bb():
    return cifar.Backbone(SMALL, pretrained=False, device="cpu")


def _data(n=8):
    return cifar.synthetic_cifar100("test", n, seed=0)


def test_a_second_job_waits_for_the_lock_or_says_who_holds_it(tmp_path, offline, capsys):
    bb, data = _bb(), _data()
    folder = cmod.cache_dir(tmp_path) / cmod.cache_key(cmod.cache_fields(bb, data))
    folder.mkdir(parents=True)
    with cmod.cache_lock(folder):  # another job is extracting
        with pytest.raises(cmod.CacheLockedError, match=re.escape(str(folder / "extract.lock"))):
            cifar.extract_features(bb, data, tmp_path, batch_size=4, progress=False, lock_timeout=0.3)
    assert not (folder / "features.npy.partial").exists()  # it touched nothing
    with pytest.raises(ValueError, match="lock_timeout must be None"):
        cifar.extract_features(bb, data, tmp_path, lock_timeout=-1)

    # the other job finishes while this one waits: this one then uses its cache, extracting nothing
    def other_job():
        with cmod.cache_lock(folder):
            started.set()
            cmod._extract_locked(bb, data, folder, cmod.cache_fields(bb, data), 4, 4, False, False, None)
            time.sleep(0.3)

    started = threading.Event()
    t = threading.Thread(target=other_job)
    t.start()
    started.wait(10)
    calls = []
    got = cifar.extract_features(bb, data, tmp_path, batch_size=4, after_chunk=calls.append)
    t.join()
    assert calls == [] and "waiting for another job" in capsys.readouterr().out
    assert got.features.shape[0] == len(data)


def test_labels_are_checksummed(tmp_path, offline):
    good = cifar.extract_features(_bb(), _data(), tmp_path, batch_size=4, progress=False)
    assert good.meta["labels_md5"] == hashlib.md5((good.path / "labels.npy").read_bytes()).hexdigest()
    labels = np.load(good.path / "labels.npy", allow_pickle=False)
    labels[2] = (labels[2] + 1) % 100  # same size, same header: only a checksum sees it
    np.save(good.path / "labels.npy", labels, allow_pickle=False)
    with pytest.raises(cifar.CacheCorruptError, match="labels.npy: its md5 differs"):
        cifar.open_cache(good.path, verify=False)


@pytest.mark.parametrize("bad", [float("nan"), 1e6])  # 1e6 is inf in fp16
def test_non_finite_features_are_refused_before_they_are_written(tmp_path, monkeypatch, offline, bad):
    bb, data = _bb(), _data(12)
    real = bb.tokens

    def tokens(x):
        out = real(x)
        if len(x) and x.shape[0] > 1:
            out[1, 0, 0] = bad
        return out

    monkeypatch.setattr(bb, "tokens", tokens)
    with pytest.raises(ValueError, match=r"non-finite features .* index\(es\) \[1\]"):
        cifar.extract_features(bb, data, tmp_path, batch_size=4, chunk_size=4, progress=False)
    folder = cmod.cache_dir(tmp_path) / cmod.cache_key(cmod.cache_fields(bb, data))
    assert not (folder / "features.npy").exists()
    assert json.loads((folder / "progress.json").read_text())["done"] == 0


def test_metadata_that_is_not_an_object_is_a_corrupt_cache(tmp_path, offline):
    good = cifar.extract_features(_bb(), _data(), tmp_path, batch_size=4, progress=False)
    (good.path / "meta.json").write_text("[1, 2, 3]")
    with pytest.raises(cifar.CacheCorruptError, match="holds a JSON list, not an object"):
        cifar.open_cache(good.path)
    assert cifar.find_caches(tmp_path) == []  # skipped when listing, reported when opened
    with pytest.warns(cifar.CacheRebuildWarning, match="not valid cache metadata"):
        again = cifar.extract_features(_bb(), _data(), tmp_path, batch_size=4, progress=False)
    assert isinstance(again.meta, dict)


# --------------------------------------------------------------------------------------------------
# 7. (command line) a data root that is a file
# --------------------------------------------------------------------------------------------------

def test_cvxattn_data_pointing_at_a_file(tmp_path, monkeypatch, capsys):
    from cvxattn_lib.runtime import data_root

    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("CVXATTN_DATA", str(afile))
    with pytest.raises(ValueError, match=f"CVXATTN_DATA='{re.escape(str(afile))}' is a file, not a folder"):
        data_root()
    assert main(["report"]) == 2
    assert "CVXATTN_DATA=" in capsys.readouterr().err
