"""The memory and time plan (cvxattn_lib/cifar/plan.py): the model against measured peak memory,
``train --plan`` on the full CIFAR-100 sizes, ``--strict`` refusal, skipped-and-recorded heads, the
full-scale command in README and ``--help``, and the batched (streaming) convex heads equal to the
unbatched ones."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from cvxattn_lib.cifar import plan as P
from cvxattn_lib.cifar.names import FULL_COMMAND

REPO = Path(__file__).resolve().parent.parent
FULL = P.Sizes(50000, 10000, 196, 256, 100)

# --------------------------------------------------------------------------------------------
# the model against the measured peak (a fresh process per size)

MEASURE = r"""
import json, sys, warnings
import numpy as np
import torch
torch.set_num_threads(1)
from cvxattn_lib.cifar.heads import train_head
from cvxattn_lib.cifar import plan as P
warnings.simplefilter("ignore")
head, n, s, d, c, bs = sys.argv[1], *map(int, sys.argv[2:7])
rng = np.random.default_rng(0)
def data(n, s, d):
    return rng.standard_normal((n, s, d)).astype(np.float32), np.arange(n) % c
opts = {"solver_options": {"max_iter": 5, "tol": 1e-12}}
Xw, yw = data(20, 2, 2)  # warm up: torch's own first allocations are not the head's
train_head(head, Xw, yw, Xw[:10], yw[:10], 1.0, device="cpu", progress=False, classes=c, batch_size=bs,
           **opts)
X, y = data(n, s, d)
Xt, yt = data(n // 4, s, d)
def status(key):  # kB -> bytes, from /proc/self/status
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the resident set now
    f.write("5")
base = status("VmRSS")
train_head(head, X, y, Xt, yt, 0.1, device="cpu", progress=False, classes=c, batch_size=bs, **opts)
peak = status("VmHWM")
plan = P.head_plan(head, P.Sizes(n, n // 4, s, d, c), s, d, "fista", batch_size=bs, device_type="cpu",
                   reduced=False)
print(json.dumps({"measured": peak - base, "model": plan.host_bytes}))
"""

#: (head, n, tokens, features, classes, batch size): each a few seconds, 130-300 MB measured here
SIZES = [("mixer", 2000, 16, 16, 20, 256), ("fno", 8000, 16, 32, 50, 2048), ("mixer", 3000, 16, 24, 20, 512)]


@pytest.mark.parametrize("head,n,s,d,c,bs", SIZES)
def test_memory_model_within_2x_of_the_measured_peak(head, n, s, d, c, bs):
    """Peak resident memory (VmHWM, reset by /proc/self/clear_refs just before the fit, so an
    earlier peak cannot hide it) over the resident set after the imports, a warm-up and the input features
    (which the model's features term leaves out: ``reduced=False``), in a fresh process on the CPU
    (host and device one memory).  glibc's dynamic mmap threshold would keep freed mid-size blocks
    (the prediction chunks) in the heap and grow the RSS by what the arrays no longer use; a fixed
    threshold returns them, so the measurement counts arrays, as the model does."""
    env = dict(os.environ, PYTHONPATH=str(REPO), MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", MEASURE, head, *map(str, (n, s, d, c, bs))],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    measured, model = got["measured"], got["model"]
    assert measured > 100e6, f"measured {measured / 1e6:.0f} MB: too small to be above the noise"
    assert 0.5 <= model / measured <= 2.0, f"{head} {n}x{s}x{d}: model {model / 1e6:.0f} MB, " \
                                           f"measured {measured / 1e6:.0f} MB"


# --------------------------------------------------------------------------------------------
# train --plan

def _plan_rows(text: str) -> dict:
    """``{head: (t x d, method, host GB, device GB, fits)}`` from the plan table."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)\s+(\d+x\d+)\s+(\w+)\s+([\d.]+) GB\s+([\d.]+) GB\s+(yes|NO)\s", line)
        if m:
            rows[m[1]] = (m[2], m[3], float(m[4]), float(m[5]), m[6] == "yes")
    return rows


def test_full_job_plan_fits_one_80gb_gpu_and_a_128gb_host(capsys):
    from cvxattn_lib.cifar.cli import main
    from cvxattn_lib.cifar.heads import HEADS

    args = shlex.split(FULL_COMMAND)[3:]  # after "python -m cvxattn_lib.cifar"
    assert main([*args, "--plan", "--device-memory", "80", "--host-memory", "128"]) == 0
    text = capsys.readouterr().out
    assert "50000 train / 10000 test images, 196 tokens x 256 features, 100 classes" in text
    rows = _plan_rows(text)
    assert set(rows) == set(HEADS), text
    for head, (_, _, host, device, fits) in rows.items():
        assert fits and host <= 128 and device <= 80, (head, text)
    # the convex heads whose lifted Z is large get reduced features or Burer-Monteiro
    assert rows["attention_linear"][0] != "196x256" or rows["attention_linear"][1] == "burer_monteiro"
    assert "throughput assumed" in text


def test_plan_sizes_from_the_options_without_features(capsys, tmp_path):
    from cvxattn_lib.cifar.cli import main

    base = ["train", "--plan", "--device", "cpu", "--host-memory", "64", "--heads", "linear,mixer",
            "--data-root", str(tmp_path)]
    assert main([*base, "--backbone", "resnet20:layer2", "--subset", "5000"]) == 0
    assert "5000 train / 10000 test images, 256 tokens x 32 features, 100 classes" in capsys.readouterr().out
    assert main([*base, "--backbone", "vit_small_patch16_224"]) == 2
    assert "--plan-sizes" in capsys.readouterr().err
    assert main([*base, "--backbone", "vit_small_patch16_224", "--plan-sizes", "100,50,197,384,10"]) == 0
    assert "100 train / 50 test images, 197 tokens x 384 features, 10 classes" in capsys.readouterr().out
    # the shipped digits plan with their own split and classes (they once got CIFAR-100's sizes)
    assert main([*base, "--data", "digits", "--backbone", "resnet20:layer2"]) == 0
    assert "450 train / 449 test images, 256 tokens x 32 features, 10 classes" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # nothing read or written


def test_plan_switches_to_burer_monteiro_where_z_does_not_fit():
    kw = dict(device_type="cuda", host_memory=128 * P.GB, device_memory=80 * P.GB)
    fista = P.plan_head("attention_linear", FULL, "none", "none", "fista", **kw)
    assert not fista.fits and "--reduce" in fista.advice  # Z (65536, 25600) x7 does not fit
    auto = P.plan_head("attention_linear", FULL, "none", "none", "auto", **kw)
    assert auto.fits and auto.method == "burer_monteiro"
    # the lifted Z of linear attention, (d^2, d c), grows as d^3 c: the model says so
    small = P.head_plan("attention_linear", FULL, 196, 32, **kw)
    big = P.head_plan("attention_linear", FULL, 196, 64, **kw)
    key = next(k for k in big.device if k.startswith("lifted Z"))
    assert big.device[key] == 8 * small.device[next(k for k in small.device if k.startswith("lifted Z"))]


# --------------------------------------------------------------------------------------------
# a real train: skip and record, or refuse with --strict

@pytest.fixture
def standin_args(tmp_path):
    from cvxattn_lib.cifar import backbone as bbmod

    return ["--data-root", str(tmp_path), "--backbone", "test_vit", "--no-pretrained", "--subset", "40",
            "--test-subset", "20", "--no-download", "--no-progress", "--threads", "1", "--batch-size", "20",
            "--heads", "linear,attention_linear", "--reduce-dim", "16", "--reduce-tokens", "16",
            "--method", "fista", "--host-memory", "0.015"], bbmod


def test_head_that_would_not_fit_is_skipped_and_recorded_or_refused(standin_args, tmp_path, capsys,
                                                                     monkeypatch):
    from cvxattn_lib import cifar
    from cvxattn_lib.cifar.cli import load_results, main

    args, bbmod = standin_args
    monkeypatch.setattr(bbmod, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(bbmod, "_cached_weights", lambda cfg: None)
    out = tmp_path / "res.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cifar.DataUnavailableWarning)
        assert main(["train", *args, "--strict", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--strict" in err and "attention_linear" in err and "what makes it fit: --" in err
        assert "linear:" not in err.replace("attention_linear:", "")  # linear fits
        assert not out.exists()  # nothing ran
        assert main(["train", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    res = load_results(out)
    rows = {r["head"]: r for r in res["rows"]}
    assert rows["linear"]["status"] == "ok" and rows["linear"]["plan"]["fits"]
    skipped = rows["attention_linear"]
    assert skipped["status"] == "skipped" and res["skipped"] == 1 and res["failed"] == 0
    assert "would not fit (host: needs" in skipped["error"] and "what makes it fit: --" in skipped["error"]
    assert "SKIPPED" in printed


# --------------------------------------------------------------------------------------------
# the full-scale command: one constant, in README, notebook 05 and train --help

def test_full_command_in_readme_notebook_and_train_help(capsys):
    from cvxattn_lib.cifar.cli import main

    assert FULL_COMMAND in (REPO / "README.md").read_text()
    assert FULL_COMMAND in (REPO / "notebooks" / "05_cifar100_convex_heads.ipynb").read_text()
    assert main(["train", "--help"]) == 0
    assert FULL_COMMAND in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# streaming: batches of any size give the same fit and certificate

def _tokens(n=30, s=4, d=3, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, s, d))
    y = np.arange(n) % c
    X[np.arange(n), 0, y] += 2.0  # learnable
    return X.astype(np.float32), y


@pytest.mark.parametrize("head", ["attention_linear", "attention_gated_relu", "mixer", "mixer_gated_relu",
                                  "mlp_gated_relu", "fno"])
def test_batched_convex_heads_equal_the_unbatched(head):
    """Batches of 7 samples against one batch of all: every pass over the samples (design,
    gradients, certificate, predictions) is a sum over samples, so the fit agrees to float64
    round-off and the certificate is the same."""
    from cvxattn_lib.cifar.heads import train_head

    X, y = _tokens()
    Xt, yt = _tokens(12, seed=1)
    opts = {"solver_options": {"tol": 1e-8, "max_iter": 3000, "n_gates": 3} if "gated" in head and
            head != "mlp_gated_relu" else {"tol": 1e-8, "max_iter": 3000}}
    res = {b: train_head(head, X, y, Xt, yt, 0.05, device="cpu", progress=False, classes=3, batch_size=b,
                         **opts) for b in (7, 10_000)}
    a, b = res[7], res[10_000]
    assert a.rel_gap <= 1e-8 and b.rel_gap <= 1e-8
    assert abs(a.objective - b.objective) <= 1e-10 * abs(b.objective)
    assert abs(a.gap_bound - b.gap_bound) <= 1e-10 * abs(b.objective)
    assert a.top1 == b.top1 and a.units == b.units


def test_token_heads_keep_float32_and_memory_maps_and_chunk_their_masks(tmp_path):
    """No float64 copy of the features on the host: a float32 array or an fp16 memory map is kept
    as it is (the device tensor is filled chunk by chunk), and chunked masks equal the masks of all
    samples at once."""
    import torch

    from cvxattn_lib.convex.attention import attention_gates, attention_masks
    from cvxattn_lib.convex.mixer import mixer_gates, mixer_masks
    from cvxattn_lib.solvers import fit_head
    from cvxattn_lib.solvers.heads import chunked_masks, device_tensor

    X, y = _tokens(25)
    path = tmp_path / "x.npy"
    np.save(path, X.astype(np.float16))
    mm = np.load(path, mmap_mode="r")
    fits = {}
    for name, data in (("float32", X), ("memmap", mm), ("float64", mm.astype(np.float64))):
        fit = fit_head("self_attention", data, y, 0.05, device="cpu", activation="gated_relu", n_gates=2,
                       loss="cross_entropy", tol=1e-9, progress=False)
        fits[name] = fit
    assert fits["float32"].head._np[0].dtype == np.float32
    assert isinstance(fits["memmap"].head._np[0], np.memmap)
    assert abs(fits["memmap"].value - fits["float64"].value) <= 1e-12 * fits["float64"].value
    assert abs(fits["memmap"].lower_bound - fits["float64"].lower_bound) <= 1e-12 * fits["float64"].value
    X64 = X.astype(np.float64)
    G = attention_gates(3, n_gates=3, seed=0)
    assert torch.equal(chunked_masks(attention_masks, X, G, "cpu", chunk=4),
                       torch.as_tensor(attention_masks(X64, G)))
    H = mixer_gates(4, n_gates=3, seed=0)
    assert torch.equal(chunked_masks(mixer_masks, X, H, "cpu", chunk=6),
                       torch.as_tensor(mixer_masks(X64, H)))
    assert torch.equal(device_tensor(mm, torch.float64, "cpu", chunk=4),
                       torch.as_tensor(np.asarray(mm, float)))


def test_mirrored_constants_equal_the_code_they_model():
    """The plan imports no torch, so it mirrors the sizes the solvers chunk by; they must agree."""
    import importlib

    # the modules, not the functions of the same names that cvxattn_lib.solvers exports
    certify, fista, solver_heads = (importlib.import_module(f"cvxattn_lib.solvers.{m}")
                                    for m in ("certify", "fista", "heads"))

    assert P.CHUNK == solver_heads.CHUNK
    assert P.DESIGN_LIMIT == fista.DESIGN_LIMIT
    assert P.EXPLICIT_LIMIT == certify.EXPLICIT_LIMIT
