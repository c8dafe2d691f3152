"""Every bad input raises an error whose message names the argument and what was expected.

The cases raise while the arguments are checked, before anything is solved or trained, so the
whole file runs in about a second.  ``match`` is searched in the message: each pattern holds the
argument's name and the expectation ("X must be a 2-D array", "beta must be a finite number > 0").
"""

import numpy as np
import pytest
import torch

import cvxattn_lib as cal
from cvxattn_lib.nonconvex import train_mlp

N, D = 8, 3  # a small valid problem: X (8, 3), y (8,) in {-1, +1}, labels (8,) in {0, 1}
X_OK = np.random.default_rng(0).standard_normal((N, D))
Y_OK = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)
LABELS_OK = np.arange(N) % 2


def with_value(arr, index, value, dtype=float):
    out = np.array(arr, dtype=dtype)
    out[index] = value
    return out


# (id, keyword arguments replacing the valid ones, exception type, pattern naming the argument)
FIT_MLP_CASES = [
    # X
    ("X-1d", {"X": X_OK[:, 0]}, ValueError, r"X must be a 2-D array, got shape \(8,\)"),
    ("X-3d", {"X": X_OK[None]}, ValueError, r"X must be a 2-D array, got shape \(1, 8, 3\)"),
    ("X-nan", {"X": with_value(X_OK, (2, 1), np.nan)}, ValueError, r"X contains NaN"),
    ("X-inf", {"X": with_value(X_OK, (0, 0), np.inf)}, ValueError, r"X contains inf"),
    ("X-neg-inf", {"X": with_value(X_OK, (0, 0), -np.inf)}, ValueError, r"X contains inf"),
    ("X-strings", {"X": X_OK.astype(str)}, TypeError, r"X must hold real numbers, got dtype <U"),
    ("X-object", {"X": X_OK.astype(object)}, TypeError,
     r"X must hold real numbers, got dtype object"),
    ("X-complex", {"X": X_OK + 1j}, TypeError, r"X must be real, got complex dtype complex128"),
    # Y (squared loss)
    ("Y-rows", {"Y": Y_OK[:-1]}, ValueError, r"Y must have 8 rows \(one per sample of X\)"),
    ("Y-rows-2d", {"Y": Y_OK[:-2, None], "activation": "gated_relu"}, ValueError,
     r"Y must have 8 rows"),
    ("Y-nan", {"Y": with_value(Y_OK, 3, np.nan)}, ValueError, r"Y contains NaN"),
    ("Y-3d", {"Y": Y_OK[:, None, None]}, ValueError, r"Y must be a 1 or 2-D array"),
    # beta
    ("beta-0", {"beta": 0}, ValueError, r"beta must be a finite number > 0, got 0"),
    ("beta-neg", {"beta": -1}, ValueError, r"beta must be a finite number > 0, got -1"),
    ("beta-nan", {"beta": float("nan")}, ValueError, r"beta must be a finite number > 0, got nan"),
    ("beta-inf", {"beta": float("inf")}, ValueError, r"beta must be a finite number > 0, got inf"),
    ("beta-str", {"beta": "0.1"}, TypeError, r"beta must be a positive real number, got '0.1'"),
    ("beta-bool", {"beta": True}, TypeError, r"beta must be a positive real number, got True"),
    ("beta-none", {"beta": None}, TypeError, r"beta must be a positive real number, got None"),
    # activation and loss
    ("activation", {"activation": "tanh"}, ValueError,
     r"activation must be one of 'linear', 'gated_relu', 'relu'; got 'tanh'"),
    ("activation-case", {"activation": "ReLU"}, ValueError, r"activation must be one of .*'ReLU'"),
    ("loss", {"loss": "hinge"}, ValueError,
     r"loss must be one of 'squared', 'cross_entropy'; got 'hinge'"),
    # gates and n_gates
    ("gates-rows", {"activation": "gated_relu", "gates": np.ones((D + 1, 4))}, ValueError,
     r"gates must have shape \(3, \*\), got \(4, 4\)"),
    ("gates-1d", {"activation": "gated_relu", "gates": np.ones(D)}, ValueError,
     r"gates must be a 2-D array"),
    ("gates-empty", {"activation": "gated_relu", "gates": np.ones((D, 0))}, ValueError,
     r"gates must have at least one column"),
    ("gates-empty-relu", {"gates": np.ones((D, 0))}, ValueError,
     r"gates must have at least one column"),
    ("gates-nan", {"activation": "gated_relu", "gates": with_value(np.ones((D, 2)), 0, np.nan)},
     ValueError, r"gates contains NaN"),
    ("n_gates-0", {"activation": "gated_relu", "n_gates": 0}, ValueError,
     r"n_gates must be an integer >= 1, got 0"),
    ("n_gates-neg", {"n_gates": -3}, ValueError, r"n_gates must be an integer >= 1, got -3"),
    ("n_gates-float", {"activation": "gated_relu", "n_gates": 2.5}, TypeError,
     r"n_gates must be an integer >= 1, got 2.5"),
    ("n_gates-str", {"activation": "gated_relu", "n_gates": "4"}, TypeError,
     r"n_gates must be an integer >= 1, got '4'"),
    # the exact ReLU program is for one output and the squared loss
    ("relu-multi-output", {"Y": np.stack([Y_OK, -Y_OK], 1)}, ValueError,
     r"activation='relu' is the exact program for a scalar output .*got c=2"),
    ("relu-cross-entropy", {"Y": LABELS_OK, "loss": "cross_entropy"}, ValueError,
     r"activation='relu' .*loss='cross_entropy'"),
    # cross-entropy labels
    ("labels-fraction", {"Y": LABELS_OK + 0.5, "loss": "cross_entropy", "activation": "gated_relu"},
     TypeError, r"Y must hold integer class labels for loss='cross_entropy'"),
    ("labels-negative", {"Y": LABELS_OK - 1, "loss": "cross_entropy", "activation": "gated_relu"},
     ValueError, r"Y labels must be >= 0, got minimum -1"),
    ("labels-2d", {"Y": LABELS_OK[:, None], "loss": "cross_entropy", "activation": "gated_relu"},
     ValueError, (r"Y must be integer labels of shape \(8,\) for loss='cross_entropy', "
                 r"got shape \(8, 1\)")),
    ("labels-rows", {"Y": LABELS_OK[:-1], "loss": "cross_entropy", "activation": "linear"},
     ValueError, r"Y must be integer labels of shape \(8,\)"),
    ("labels-strings",
     {"Y": LABELS_OK.astype(str), "loss": "cross_entropy", "activation": "linear"}, TypeError,
     r"Y must hold integer class labels"),
]


@pytest.mark.parametrize("kwargs,exc,match", [c[1:] for c in FIT_MLP_CASES],
                         ids=[c[0] for c in FIT_MLP_CASES])
def test_fit_mlp_rejects_bad_input(kwargs, exc, match):
    args = {"X": X_OK, "Y": Y_OK, "beta": 0.1, "activation": "relu"} | kwargs
    with pytest.raises(exc, match=match):
        cal.convex.fit_mlp(**args)


@pytest.mark.parametrize("kwargs,exc,match", [c[1:] for c in FIT_MLP_CASES if "beta" not in c[1]],
                         ids=[c[0] for c in FIT_MLP_CASES if "beta" not in c[1]])
def test_mlp_program_rejects_bad_input_like_fit_mlp(kwargs, exc, match):
    """The slider's parameterised program checks its input as ``fit_mlp`` does."""
    args = {"X": X_OK, "Y": Y_OK, "activation": "relu"} | kwargs
    with pytest.raises(exc, match=match):
        cal.convex.MLPProgram(**args)


@pytest.mark.parametrize("beta,exc", [(0.0, ValueError), (-0.5, ValueError),
                                      (float("nan"), ValueError), ("1", TypeError)])
def test_mlp_program_fit_rejects_bad_beta(beta, exc):
    program = cal.convex.MLPProgram(X_OK, Y_OK, "linear")
    with pytest.raises(exc, match=r"beta must be a"):
        program.fit(beta)


def test_valid_input_of_other_numeric_types_is_accepted():
    """numpy scalars, integer arrays and integral float labels are fine (no false alarms)."""
    fit = cal.convex.fit_mlp(X_OK.astype(np.float32), Y_OK.astype(int), np.float64(0.5),
                             activation="gated_relu", n_gates=np.int64(4))
    assert np.isfinite(fit.value)
    fit = cal.convex.fit_mlp(X_OK, LABELS_OK.astype(float), 1, activation="linear",
                             loss="cross_entropy")
    assert np.isfinite(fit.value)


# -- train_mlp ---------------------------------------------------------------------------------
@pytest.mark.parametrize("restarts,exc", [(0, ValueError), (-2, ValueError), (2.5, TypeError),
                                          ("3", TypeError), (True, TypeError), (None, TypeError)])
def test_train_mlp_rejects_bad_restarts(restarts, exc):
    with pytest.raises(exc, match=r"restarts must be an integer >= 1"):
        train_mlp(X_OK, Y_OK, 0.1, "relu", restarts=restarts, progress=False)


@pytest.mark.parametrize("optimizer", ["sgd", "LBFGS", None, ""])
def test_train_mlp_rejects_bad_optimizer(optimizer):
    match = r"optimizer must be one of 'lbfgs', 'adam', 'adam\+lbfgs'"
    with pytest.raises(ValueError, match=match):
        train_mlp(X_OK, Y_OK, 0.1, "relu", restarts=1, optimizer=optimizer, progress=False)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"X": X_OK[:, 0]}, ValueError, r"X must be a 2-D array"),
    ({"beta": 0}, ValueError, r"beta must be a finite number > 0"),
    ({"activation": "gelu"}, ValueError, r"activation must be one of"),
    ({"m": 0}, ValueError, r"m must be an integer >= 1"),
    ({"loss": "mae"}, ValueError, r"loss must be one of"),
])
def test_train_mlp_rejects_bad_input(kwargs, exc, match):
    args = {"X": X_OK, "Y": Y_OK, "beta": 0.1, "activation": "relu", "restarts": 1,
            "progress": False} | kwargs
    with pytest.raises(exc, match=match):
        train_mlp(**args)


# -- runtime -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,exc", [(-1, ValueError), (1.5, ValueError), ("0", ValueError),
                                      (None, ValueError)])
def test_seed_everything_rejects_bad_seed(seed, exc):
    with pytest.raises(exc, match=r"seed must be an integer in \[0, 2\*\*32 - 1\]"):
        cal.runtime.seed_everything(seed)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_names_the_device(monkeypatch):
    monkeypatch.delenv(cal.runtime.DEVICE_ENV, raising=False)
    with pytest.raises(ValueError, match=r"device='cuda' was asked for, but torch sees no CUDA"):
        cal.runtime.device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_env_cuda_without_cuda_names_the_variable(monkeypatch):
    monkeypatch.setenv(cal.runtime.DEVICE_ENV, "cuda:0")
    with pytest.raises(ValueError, match=r"device='cuda:0' .*unset CVXATTN_DEVICE"):
        cal.runtime.device()


# -- empty inputs, seeds, gate shapes ---------------------------------------------------------
@pytest.mark.parametrize("loss,y", [("squared", Y_OK[:0]), ("cross_entropy", LABELS_OK[:0])])
def test_fit_mlp_rejects_empty_X(loss, y):
    with pytest.raises(ValueError, match=r"X must have at least one row"):
        cal.convex.fit_mlp(X_OK[:0], y, 0.1, "linear", loss=loss)


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_fit_mlp_rejects_bad_seed(seed):
    with pytest.raises((ValueError, TypeError), match=r"seed must be"):
        cal.convex.fit_mlp(X_OK, Y_OK, 0.1, "gated_relu", seed=seed)


def test_train_mlp_rejects_1d_gates():
    with pytest.raises(ValueError, match=r"gates must be a 2-D array"):
        train_mlp(X_OK, Y_OK, 0.1, "gated_relu", gates=np.ones(D), restarts=1, progress=False)
