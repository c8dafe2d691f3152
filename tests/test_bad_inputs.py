"""Bad input to the CIFAR heads (``cifar.train_head``) and the torch solvers (``solvers.fit_head``)
raises, before any training, an error whose message names the argument (issue 13, point 7).

Each case is one distinct bad input; ``BAD_INPUT_CASES`` at the end counts them.
"""

import numpy as np
import pytest

import cvxattn_lib as cal
from cvxattn_lib import validation
from cvxattn_lib.cifar import heads as hmod

RNG = np.random.default_rng(0)
N, S, D, C = 12, 3, 2, 4  # a small valid problem: tokens (12, 3, 2), labels in 0..3
X_OK = RNG.standard_normal((N, S, D)).astype(np.float32)
Y_OK = np.arange(N) % C


def with_value(arr, index, value, dtype=None):
    out = np.array(arr, dtype=dtype or arr.dtype)
    out[index] = value
    return out


# (id, keyword arguments replacing the valid ones, exception type, pattern naming the argument)
TRAIN_HEAD_CASES = [
    ("X_train-nan", {"X_train": with_value(X_OK, (3, 1, 0), np.nan)}, ValueError,
     r"X_train contains NaN \(first in sample 3\)"),
    ("X_train-inf", {"X_train": with_value(X_OK, (0, 0, 1), np.inf)}, ValueError, r"X_train contains inf"),
    ("X_test-nan", {"X_test": with_value(X_OK, (5, 2, 1), np.nan)}, ValueError, r"X_test contains NaN"),
    ("X_train-complex", {"X_train": X_OK + 1j}, TypeError, r"X_train must be real, got complex dtype"),
    ("X_test-complex", {"X_test": X_OK.astype(np.complex64)}, TypeError, r"X_test must be real"),
    ("X_train-strings", {"X_train": X_OK.astype(str)}, TypeError, r"X_train must hold real numbers"),
    ("X_train-empty", {"X_train": X_OK[:0], "y_train": Y_OK[:0]}, ValueError,
     r"X_train must have at least one row"),
    ("X_test-empty", {"X_test": X_OK[:0], "y_test": Y_OK[:0]}, ValueError,
     r"X_test must have at least one row"),
    ("X_train-2d", {"X_train": X_OK[:, 0]}, ValueError, r"X_train must be a 3-D array"),
    ("X-mismatch", {"X_test": X_OK[:, :2]}, ValueError, r"X_train and X_test must be tokens"),
    ("y_train-too-large", {"y_train": with_value(Y_OK, 4, C)}, ValueError,
     r"y_train must hold labels in \[0, classes\) = \[0, 4\), got 4"),
    ("y_train-negative", {"y_train": with_value(Y_OK, 0, -1)}, ValueError,
     r"y_train must hold labels in \[0, classes\) = \[0, 4\), got -1"),
    ("y_test-too-large", {"y_test": with_value(Y_OK, 2, 100)}, ValueError,
     r"y_test must hold labels in \[0, classes\)"),
    ("y_train-fraction", {"y_train": Y_OK + 0.5}, TypeError, r"y_train must hold integer class labels"),
    ("y_train-rows", {"y_train": Y_OK[:-1]}, ValueError, r"y_train must hold one label per sample"),
    ("classes-0", {"classes": 0}, ValueError, r"classes must be an integer >= 1"),
    ("lr-negative", {"lr": -1e-3}, ValueError, r"lr must be a finite number > 0"),
    ("option-unknown", {"widht": 8}, TypeError,
     r"train_head got unknown option\(s\) 'widht'; valid options: attn_heads, lbfgs_iter, method"),
    ("option-width-0", {"width": 0}, ValueError, r"width must be an integer >= 1"),
    ("option-method", {"method": "adam"}, ValueError, r"method must be one of 'fista', 'burer_monteiro'"),
    ("option-solver_options", {"solver_options": "max_iter=3"}, TypeError,
     r"solver_options must be a dict"),
]


@pytest.mark.parametrize("kwargs,exc,match", [c[1:] for c in TRAIN_HEAD_CASES],
                         ids=[c[0] for c in TRAIN_HEAD_CASES])
def test_train_head_rejects_bad_input_before_training(kwargs, exc, match, monkeypatch):
    def never(*args, **kw):  # the check must come before any training
        raise AssertionError("training started despite bad input")

    monkeypatch.setitem(hmod.HEADS, "linear", hmod.HeadSpec("linear", True, "", never))
    args = dict(name="linear", X_train=X_OK, y_train=Y_OK, X_test=X_OK, y_test=Y_OK, beta=0.1,
                device="cpu", progress=False, classes=C) | kwargs
    with pytest.raises(exc, match=match):
        hmod.train_head(**args)


def test_train_head_checks_a_memory_mapped_cache_in_chunks(tmp_path):
    """Features on disk (as the cache stores them, fp16) are checked row block by row block."""
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=(50, S, D))
    X[:] = 1.0
    X[37, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN \(first in sample 37\)"):
        validation.real_features("X", X, 3, chunk=8)
    X[37, 1, 1] = 0.0
    assert validation.real_features("X", X, 3, chunk=8) is X


def test_train_head_accepts_valid_input():
    """The checks raise no false alarm on the valid problem (integer-valued float labels too)."""
    r = hmod.train_head("linear", X_OK, Y_OK.astype(float), X_OK, Y_OK, 0.1, device="cpu",
                        progress=False, classes=C, lbfgs_iter=50, method="fista", solver_options={})
    assert 0.0 <= r.top1 <= 1.0 and np.isfinite(r.objective)


# -- fit_head ------------------------------------------------------------------------------------
def mlp_problem(n=6, d=3):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, d)), rng.standard_normal((n, 1))


FIT_HEAD_CASES = [
    ("tol-negative", {"tol": -1e-6}, ValueError, r"tol must be a finite number >= 0, got -1e-06"),
    ("tol-nan", {"tol": float("nan")}, ValueError, r"tol must be a finite number >= 0, got nan"),
    ("tol-str", {"tol": "1e-6"}, TypeError, r"tol must be a real number >= 0"),
    ("L0-zero", {"L0": 0}, ValueError, r"L0 must be a finite number > 0, got 0"),
    ("L0-inf", {"L0": float("inf")}, ValueError, r"L0 must be a finite number > 0"),
    ("shrink-zero", {"shrink": 0.0}, ValueError, r"shrink must be in \(0, 1\], got 0.0"),
    ("shrink-above-1", {"shrink": 1.5}, ValueError, r"shrink must be in \(0, 1\], got 1.5"),
    ("shrink-negative", {"shrink": -0.5}, ValueError, r"shrink must be in \(0, 1\]"),
    ("power_tol-negative", {"power_tol": -1.0}, ValueError, r"power_tol must be a finite number >= 0"),
    ("power_iter-0", {"power_iter": 0}, ValueError, r"power_iter must be an integer >= 1"),
    ("bm-lr-0", {"method": "burer_monteiro", "lr": 0.0}, ValueError, r"lr must be a finite number > 0"),
    ("bm-polish_iter-neg", {"method": "burer_monteiro", "polish_iter": -1}, ValueError,
     r"polish_iter must be an integer >= 0"),
]


@pytest.mark.parametrize("kwargs,exc,match", [c[1:] for c in FIT_HEAD_CASES],
                         ids=[c[0] for c in FIT_HEAD_CASES])
def test_fit_head_rejects_bad_solver_options(kwargs, exc, match):
    X, Y = mlp_problem()
    short = (dict(max_iter=50, check_every=5) if kwargs.get("method", "fista") == "fista"
             else dict(epochs=2, polish_iter=5))  # so that code without the checks ends quickly
    args = dict(kind="mlp", X=X, Y=Y, beta=0.1, n_gates=4, device="cpu", progress=False) | short | kwargs
    with pytest.raises(exc, match=match):
        cal.solvers.fit_head(**args)


def test_fit_head_shrink_one_is_plain_backtracking():
    """shrink = 1 (L never decreases) is valid FISTA with backtracking and reaches the optimum."""
    X, Y = mlp_problem()
    a = cal.solvers.fit_head("mlp", X, Y, 0.1, n_gates=4, device="cpu", progress=False, shrink=1.0)
    b = cal.solvers.fit_head("mlp", X, Y, 0.1, n_gates=4, device="cpu", progress=False)
    assert a.converged and b.converged
    assert abs(a.value - b.value) <= 2e-6 * abs(b.value)


def test_fit_head_refuses_sizes_that_cannot_fit_before_allocating(monkeypatch):
    """n_gates = 10**12 needs tens of TiB: refused with the sizes named, nothing allocated."""
    def no_alloc(*args, **kw):
        raise AssertionError("gates were sampled before the size check")

    monkeypatch.setattr(cal.arrangements, "sample_gates", no_alloc)
    X, Y = mlp_problem()
    with pytest.raises(validation.TooLargeError, match=r"n_gates=1000000000000.*TiB.*gates \(d, P\) = "
                       r"\(3, 1000000000000\).*use fewer gates \(n_gates\)") as err:
        cal.solvers.fit_head("mlp", X, Y, 0.1, n_gates=10**12, device="cpu", progress=False)
    assert isinstance(err.value, MemoryError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("kind,activation,method,part", [
    ("self_attention", "gated_relu", "fista", r"masks \(P, n, s, s\) = \(64, 12, 3, 3\)"),
    ("mixer", "gated_relu", "fista", r"lifted Z \(P, p, q\) = \(64, 9, 8\), 5 copies"),
    ("self_attention", "linear", "burer_monteiro", r"factors \(P, p \+ q, rank\) = \(1, 12, 4\)"),
    ("fno", "spectral", "fista", r"lifted Z \(P, p, q\) = \(2, 2, 4\)"),
])
def test_fit_head_memory_estimate_names_the_sizes_of_each_head(kind, activation, method, part,
                                                               monkeypatch):
    """With the memory made tiny, each head's estimate refuses and names its arrays."""
    monkeypatch.setattr(cal.solvers.api, "total_memory", lambda device=None: 1024)
    n_gates = None if activation in ("linear", "spectral") else 64
    with pytest.raises(validation.TooLargeError, match=part + r".*more than the 1\.0 KiB of memory"):
        cal.solvers.fit_head(kind, X_OK, Y_OK, 0.1, activation=activation, n_gates=n_gates,
                             method=method, loss="cross_entropy", device="cpu", progress=False,
                             **({"rank": 4} if method == "burer_monteiro" else {}))


# distinct bad inputs tested in this file: train_head 21, fit_head 12 options + 1 size
BAD_INPUT_CASES = len(TRAIN_HEAD_CASES) + len(FIT_HEAD_CASES) + 1


def test_fit_head_memory_on_a_gpu_counts_device_arrays_against_the_gpu(monkeypatch):
    """On CUDA the torch arrays are held against the GPU's memory, numpy ones against the host's."""
    import torch

    from cvxattn_lib.solvers import api

    monkeypatch.setattr(api, "total_memory", lambda device=None: 2**40 if device is None else 2**20)
    X = np.zeros((10**5, 2))  # only its shape is read
    args = ("mlp", X, X[:, :1], "gated_relu", None, 64, "squared", "fista", {}, torch.float32)
    with pytest.raises(validation.TooLargeError, match=r"on cuda:0 needs at least .*patterns \(n, P\) = "
                       r"\(100000, 64\) on the device: 24\.4 MiB.*more than the 1\.0 MiB of memory"):
        api._check_memory(*args, torch.device("cuda:0"))
    api._check_memory(*args, torch.device("cpu"))  # the same sizes fit the host's (mocked) 1 TiB
