"""beta as a fraction of each head's beta_max (``train_head(..., beta_fraction=f)``, ``train
--beta-fractions``), recorded in the results and the table; every head built for the data set's class
count, also when the training labels miss a class."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cvxattn_lib.cifar import heads as hmod
from cvxattn_lib.cifar.cli import format_table, load_results, main, run_heads, save_results

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

C = 3
SOLVER = {"tol": 1e-9, "max_iter": 5000}


def tokens(n=24, s=4, d=3, seed=0, classes=2):
    """Tokens (n, s, d) whose labels (n,) use classes 0..classes-1 only (of a C-class data set)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = rng.standard_normal((C, d))
    X = centers[y][:, None] + 0.7 * rng.standard_normal((n, s, d))
    return X, y


def convex_heads():
    return [h for h in ("mlp_gated_relu", "attention_linear", "attention_gated_relu", "mixer", "fno",
                        "fno_spectral", "fno_token") if h in hmod.available_heads()]


def fit(name, f, X, y, **kw):
    # n_gates for the gated heads and mlp_relu (whose beta is mlp_gated_relu's), as --solver-option would
    so = dict(SOLVER, n_gates=2) if "gated" in name or name == "mlp_relu" else dict(SOLVER)
    return hmod.train_head(name, X, y, X[:8], y[:8], beta_fraction=f, device="cpu", progress=False,
                           classes=C, epochs=2, solver_options=so, **kw)


# --- train_head ---------------------------------------------------------------------------------------

def test_beta_is_the_fraction_times_beta_max_exactly_and_shared_within_a_family():
    X, y = tokens()
    rows = {h: fit(h, 0.3, X, y) for h in ["linear", "linear_flat", "mlp_relu", "attention_softmax",
                                           *convex_heads()]}
    for h, r in rows.items():
        assert r.beta_fraction == 0.3 and r.beta == 0.3 * r.beta_max, h  # recorded exactly
        assert r.beta_max > 0 and r.classes == C
    for h in convex_heads():
        assert rows[h].beta_max_of == h
    # mlp_relu takes the absolute beta of the convex head of its family; softmax attention that of
    # the linear head on the token mean (what it is at W1 = 0)
    assert rows["mlp_relu"].beta_max_of == "mlp_gated_relu"
    assert rows["attention_softmax"].beta_max_of == "linear"
    if "mlp_gated_relu" in rows:
        assert rows["mlp_relu"].beta == rows["mlp_gated_relu"].beta
    assert rows["attention_softmax"].beta == rows["linear"].beta
    # linear heads: beta_max of the two-layer linear net = ||Xbar^T (P0 - E)||_2 at W = 0 (P0 = 1/C)
    E = np.eye(C)[y]
    X32 = X.astype(np.float32)  # the heads pool in float32
    for h, Xin in (("linear", X32.mean(1)), ("linear_flat", X32.reshape(len(X), -1))):
        Xin = Xin.astype(np.float64)
        want = np.linalg.norm(Xin.T @ (1.0 / C - E), 2)
        assert abs(rows[h].beta_max - want) <= 1e-12 * want, h
    # an absolute beta records no fraction
    r = hmod.train_head("linear", X, y, X[:8], y[:8], 0.5, device="cpu", progress=False, classes=C)
    assert r.beta == 0.5 and r.beta_max is None and r.beta_fraction is None and r.beta_max_of is None


@pytest.mark.parametrize("f", [1.0, 2.5])
def test_fraction_at_least_one_gives_the_zero_solution_with_a_certificate(f):
    X, y = tokens()
    zero = len(y) * math.log(C)  # sum of CE at zero logits over C classes
    for h in convex_heads():
        r = fit(h, f, X, y)
        assert r.units == 0 and r.params == 0, h
        assert abs(r.objective - zero) <= 1e-12 * zero, h
        assert abs(r.gap_bound) <= 1e-10 * zero and r.rel_gap <= 1e-12, h  # certified optimal
    # just below 1 the convex heads are not zero
    below = fit("mlp_gated_relu", 0.9, X, y) if "mlp_gated_relu" in convex_heads() else None
    if below is not None:
        assert below.units >= 1 and below.objective < zero


@pytest.mark.parametrize("kw, err, match", [
    ({}, TypeError, "exactly one of beta and beta_fraction"),
    ({"beta": 0.1, "beta_fraction": 0.5}, TypeError, "exactly one of beta and beta_fraction"),
    ({"beta_fraction": 0.0}, ValueError, "beta_fraction"),
    ({"beta_fraction": -1.0}, ValueError, "beta_fraction"),
    ({"beta_fraction": float("nan")}, ValueError, "beta_fraction"),
    ({"beta_fraction": float("inf")}, ValueError, "beta_fraction"),
    ({"beta_fraction": "0.5"}, TypeError, "beta_fraction"),
    ({"beta_fraction": True}, TypeError, "beta_fraction"),
])
def test_train_head_bad_beta_options_name_the_argument(kw, err, match):
    X, y = tokens()
    with pytest.raises(err, match=match):
        hmod.train_head("linear", X, y, X, y, device="cpu", progress=False, classes=C, **kw)


# --- every head built for the data set's class count ---------------------------------------------------

def test_fit_head_takes_the_class_count():
    from cvxattn_lib import solvers

    X, y = tokens()  # labels 0, 1 only
    kw = dict(loss="cross_entropy", device="cpu", progress=False, tol=1e-8)
    for kind in ("mlp", "self_attention", "mixer", "fno"):
        Xk = X.mean(1) if kind == "mlp" else X
        act = {"mlp": "linear"}.get(kind)
        four = solvers.fit_head(kind, Xk, y, 0.5, activation=act, classes=4, **kw)
        assert four.prediction().shape == (len(y), 4), kind
        assert solvers.fit_head(kind, Xk, y, 0.5, activation=act, **kw).prediction().shape[1] == 2
    # beta_max of the linear two-layer net with 4 logits: ||X^T (1/4 - E)||_2, E one-hot in 4 columns
    Xm = X.mean(1)
    want = np.linalg.norm(Xm.T @ (0.25 - np.eye(4)[y]), 2)
    got = solvers.beta_max("mlp", Xm, y, activation="linear", loss="cross_entropy", classes=4)
    assert abs(got - want) <= 1e-12 * want
    with pytest.raises(ValueError, match="classes=1"):
        solvers.fit_head("mixer", X, y, 0.5, classes=1, **kw)
    with pytest.raises(ValueError, match="classes is for loss='cross_entropy'"):
        solvers.fit_head("mixer", X, np.zeros((len(y), 4, 2)), 0.5, classes=2, device="cpu")
    with pytest.raises(ValueError, match="classes"):
        solvers.beta_max("mixer", X, y, loss="cross_entropy", classes=0)


def _outputs(model) -> int:
    """The number of logits of a trained head: its last weight's last axis (torch heads) or that of
    the recovered weights (convex fits), checked against the solver's own outputs."""
    if isinstance(model, torch.nn.Module):
        return list(model.parameters())[-1].shape[-1]
    w = model.weights()
    out = (w.get("W2") if "W2" in w else w["B"]).shape[-1]
    assert model.prediction().shape[1] == out
    return out


def test_every_head_on_a_3_class_image_folder_has_3_outputs(tmp_path):
    """A generated 3-class ImageFolder through a random conv backbone; the training labels hold
    classes 0 and 1 only: every head (convex or not) still has 3 logits."""
    from PIL import Image

    from cvxattn_lib.cifar import explore
    from cvxattn_lib.cifar.cli import prepare_features
    from cvxattn_lib.cifar.grid import TokenGridBackbone

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for k in range(C):
            (tmp_path / "three" / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 80, size=(16, 16, 3))
                img[..., k] += 150
                Image.fromarray(img.astype(np.uint8)).save(tmp_path / "three" / split / f"c{k}" / f"{i}.png")
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 8, stride=8), torch.nn.ReLU())
    bb = TokenGridBackbone(conv, "tinyconv", input_size=16, device="cpu")
    prepared = prepare_features(tmp_path, bb, batch_size=9, progress=False, verbose=False,
                                data=f"imagefolder:{tmp_path / 'three'}")
    assert prepared["classes"] == C
    feats = {"train": prepared["caches"]["train"].features.astype(np.float64),
             "test": prepared["caches"]["test"].features.astype(np.float64),
             "y_train": np.asarray(prepared["caches"]["train"].labels),
             "y_test": np.asarray(prepared["caches"]["test"].labels), "info": {}}
    keep = feats["y_train"] < 2  # classes 0 and 1 only in training
    feats["train"], feats["y_train"] = feats["train"][keep], feats["y_train"][keep]
    heads = hmod.available_heads()
    assert {"linear", "linear_flat", "mlp_relu", "attention_softmax"} <= set(heads)
    results, models = explore.sweep(prepared, feats, heads, [0.05], device="cpu", progress=False,
                                    verbose=False, epochs=1, batch_size=4,
                                    solver_options={"max_iter": 50, "tol": 1e-3},
                                    head_options={h: {"solver_options": {"n_gates": 2}}
                                                  for h in heads if "gated" in h})
    for (h, _), model in models.items():
        assert _outputs(model) == C, h
    assert all(r["classes"] == C for r in results["rows"])
    assert "built for fewer" not in format_table(results)


# --- results, resume and table --------------------------------------------------------------------------

class _Cache:
    def __init__(self, X, y, key):
        self.features, self.labels, self.key, self.meta = X, y, key, {"version": "test"}

    def __len__(self):
        return len(self.labels)


def _prepared():
    from types import SimpleNamespace
    from pathlib import Path

    X, y = tokens(n=30, classes=C)
    caches = {"train": _Cache(X[:20].astype(np.float16), y[:20], "k-train"),
              "test": _Cache(X[20:].astype(np.float16), y[20:], "k-test")}
    bb = SimpleNamespace(name="tokens", pretrained=False, transform="none", device=torch.device("cpu"))
    return {"root": Path("."), "backbone": bb, "caches": caches, "source": "synthetic stand-in",
            "classes": C}


def test_results_rows_table_and_resume_with_beta_fractions(tmp_path, capsys):
    heads = ["linear", "mlp_relu"] + [h for h in ("mlp_gated_relu",) if h in hmod.available_heads()]
    out = tmp_path / "res.json"
    kw = dict(device="cpu", progress=False, epochs=1, batch_size=8, out=out, verbose=False,
              method="fista", solver_options={"n_gates": 2, "tol": 1e-8})
    res = run_heads(_prepared(), heads, beta_fractions=[0.25, 1.5], **kw)
    assert res["complete"] and res["beta_fractions"] == [0.25, 1.5] and res["betas"] == []
    saved = load_results(out)
    assert len(saved["rows"]) == 2 * len(heads)
    for r in saved["rows"]:
        assert r["beta"] == r["beta_fraction"] * r["beta_max"]
        assert hmod.HeadResult.from_dict(r).beta_max == r["beta_max"]
    table = format_table(saved)
    assert "b/bmax" in table and "mlp_relu: beta_max of mlp_gated_relu" in table
    for r in saved["rows"]:  # beta and beta / beta_max side by side
        assert f"{r['beta']:8.2g} {r['beta_fraction']:7.3g}" in table
    md = format_table(saved, markdown=True)
    assert "| beta | beta/beta_max |" in md and "| 0.25 |" in md
    # a rerun resumes by fraction: nothing trained again
    calls = []
    real = hmod.train_head

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    hmod.train_head, saved_fn = counting, hmod.train_head
    try:
        again = run_heads(_prepared(), heads, beta_fractions=[0.25, 1.5], **kw)
        assert calls == [] and again["rows"] == saved["rows"]
        with pytest.raises(ValueError, match="other options"):  # another grid: refused, not mixed
            run_heads(_prepared(), heads, beta_fractions=[0.25], **kw)
        with pytest.raises(ValueError, match="other options"):
            run_heads(_prepared(), heads, betas=[0.25, 1.5], **kw)
    finally:
        hmod.train_head = saved_fn
    with pytest.raises(ValueError, match="not both"):
        run_heads(_prepared(), heads, betas=[0.1], beta_fractions=[0.5], **kw)
    with pytest.raises(ValueError, match="beta_fractions"):
        run_heads(_prepared(), heads, beta_fractions=[0.5, -1.0], **dict(kw, out=None))


def test_a_failed_fraction_row_is_recorded_and_retried(tmp_path, monkeypatch):
    out = tmp_path / "res.json"
    real = hmod.train_head

    def broken(name, *a, **k):
        if name == "mlp_relu":
            raise RuntimeError("broken on purpose")
        return real(name, *a, **k)

    monkeypatch.setattr(hmod, "train_head", broken)
    kw = dict(device="cpu", progress=False, epochs=1, batch_size=8, out=out, verbose=False)
    res = run_heads(_prepared(), ["linear", "mlp_relu"], beta_fractions=[0.5], **kw)
    bad = [r for r in res["rows"] if r.get("status") == "failed"]
    assert len(bad) == 1 and bad[0]["beta"] is None and bad[0]["beta_fraction"] == 0.5
    saved = load_results(out)  # a failed row without an absolute beta still loads
    assert "FAILED: RuntimeError: broken on purpose" in format_table(saved)
    monkeypatch.setattr(hmod, "train_head", real)
    res = run_heads(_prepared(), ["linear", "mlp_relu"], beta_fractions=[0.5], **kw)
    assert res["failed"] == 0 and all(r["beta"] == 0.5 * r["beta_max"] for r in res["rows"])


def test_old_results_without_the_new_fields_still_load_and_print(tmp_path):
    res = run_heads(_prepared(), ["linear"], betas=[0.5], device="cpu", progress=False, verbose=False)
    for r in res["rows"]:
        for k in ("beta_max", "beta_fraction", "beta_max_of"):
            r.pop(k)
    res.pop("beta_fractions", None)
    path = save_results(res, tmp_path / "old.json")
    old = load_results(path)
    table = format_table(old)
    assert "linear" in table and "b/bmax:" not in table
    row = hmod.HeadResult.from_dict(old["rows"][0])
    assert row.beta == 0.5 and row.beta_fraction is None and row.beta_max is None
    assert json.loads(path.read_text())["rows"][0]["beta"] == 0.5


# --- the command line ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, match", [
    (["--betas", "0.1", "--beta-fractions", "0.5"], "not allowed with argument"),
    (["--beta-fractions", "0"], "beta fractions must be positive finite numbers"),
    (["--beta-fractions", "-0.5"], "beta fractions must be positive finite numbers"),
    (["--beta-fractions", "nan"], "beta fractions must be positive finite numbers"),
    (["--beta-fractions", "inf"], "beta fractions must be positive finite numbers"),
    (["--beta-fractions", "0.5,0.5"], "beta fractions must not repeat"),
    (["--beta-fractions", "half"], "expected comma-separated numbers"),
])
def test_cli_beta_fractions_exclusive_and_checked(tmp_path, capsys, argv, match):
    assert main(["train", "--data-root", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "--beta-fractions" in err
    assert not (tmp_path / "cache").exists()  # nothing done


def test_cli_help_names_beta_fractions(capsys):
    assert main(["train", "--help"]) == 0
    assert "--beta-fractions" in capsys.readouterr().out


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_beta_fraction_on_cuda_matches_the_cpu():
    """The same fraction on CUDA: the same beta_max (float64) and the same certified optimum."""
    X, y = tokens()
    for h in ["mlp_relu", *convex_heads()]:
        so = dict(SOLVER, n_gates=2) if "gated" in h or h == "mlp_relu" else dict(SOLVER)
        kw = dict(beta_fraction=0.3, progress=False, classes=C, epochs=2, solver_options=so)
        cpu = hmod.train_head(h, X, y, X[:8], y[:8], device="cpu", **kw)
        gpu = hmod.train_head(h, X, y, X[:8], y[:8], device="cuda", **kw)
        assert gpu.device.startswith("cuda") and gpu.classes == C, h
        assert abs(gpu.beta_max - cpu.beta_max) <= 1e-10 * cpu.beta_max, h
        if cpu.convex:
            assert abs(gpu.objective - cpu.objective) <= 1e-7 * cpu.objective, h


def test_gates_options_reach_the_gated_heads_only():
    """One --solver-option grid for every head: n_gates concerns the gated heads, the others ignore it."""
    X, y = tokens()
    for h in [h for h in ("fno", "mixer", "attention_linear") if h in hmod.available_heads()]:
        r = hmod.train_head(h, X, y, X[:8], y[:8], 0.5, device="cpu", progress=False, classes=C,
                            solver_options={"n_gates": 2, "tol": 1e-6})
        assert r.classes == C and r.rel_gap <= 1e-6, h


def test_notebook_sweep_plot_and_slider_over_fractions():
    """explore.sweep over beta_fractions: rows and models keyed by fraction, at_beta picks a
    fraction, the plot's x axis and the sweep slider say beta / beta_max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cvxattn_lib import widgets
    from cvxattn_lib.cifar import explore

    prepared = _prepared()
    tr, te = prepared["caches"]["train"], prepared["caches"]["test"]
    feats = {"train": tr.features.astype(np.float64), "test": te.features.astype(np.float64),
             "y_train": tr.labels, "y_test": te.labels, "info": {"method": "none"}}
    heads = ["linear", "mlp_relu"] + [h for h in ("mlp_gated_relu",) if h in hmod.available_heads()]
    results, models = explore.sweep(prepared, feats, heads, beta_fractions=[0.1, 0.5], device="cpu",
                                    progress=False, verbose=False, epochs=1, batch_size=8,
                                    solver_options={"n_gates": 2, "tol": 1e-8})
    assert set(models) == {(h, f) for h in heads for f in (0.1, 0.5)}
    assert results["beta_fractions"] == [0.1, 0.5] and explore.grid_key(results) == "beta_fraction"
    sub = explore.at_beta(results, 0.4)
    assert sub["beta_fractions"] == [0.5] and [r["head"] for r in sub["rows"]] == heads
    assert all(r["beta"] == 0.5 * r["beta_max"] for r in sub["rows"])
    fig = explore.plot_sweep(results, beta=0.5)
    assert fig.axes[0].get_xlabel().startswith("β / β_max")
    assert sorted(fig.axes[0].lines[0].get_xdata()) == [0.1, 0.5]
    plt.close(fig)
    ex = widgets.cifar_sweep_explorer(results, beta=0.1)
    assert ex.slider.description == "β / β_max" and ex.slider.value == 0.1
    assert set(ex.last["top1"]) == set(heads)
    with pytest.raises(ValueError, match="exactly one of betas and beta_fractions"):
        explore.sweep(prepared, feats, heads, [0.1], beta_fractions=[0.1])
    plt.close("all")
