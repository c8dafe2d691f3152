r"""Heads trained on cached tokens X (n, s, d) with CIFAR-100 labels, and how each is scored.

Every head minimises the project's objective
:math:`\sum_i \mathrm{CE}(f(X_i), y_i) + \tfrac{\beta}{2}\sum \|W\|_F^2` (sum over samples), so one
``beta`` weighs the same penalty in every head.  It does not regularise them alike: each convex head's
:math:`\beta_{\max}` (the smallest beta with the zero solution) is its own, and they differ by orders
of magnitude.  ``train_head(..., beta_fraction=f)`` gives beta as a fraction of it (the glmnet
:math:`\lambda/\lambda_{\max}` convention, :func:`reference_beta_max`): convex heads solved by
``fit_head`` take :math:`\beta = f\,\beta_{\max}` of their own program (zero at f >= 1); the heads with a
squared-norm penalty, which have no :math:`\beta_{\max}` (zero is optimal only where the gradient at
zero vanishes), take f times a reference :math:`\beta_{\max}` (:data:`BETA_MAX_OF`): ``mlp_relu``
that of ``mlp_gated_relu`` (one absolute beta, the weight decay of the same weights),
``attention_softmax`` that of the linear head on the token mean (what it is at :math:`W_1 = 0`).

* ``linear``: logits :math:`\bar x W` on the token mean :math:`\bar x`; convex, solved by full-batch
  L-BFGS in float64, with the duality gap
  :math:`p(W) - \max_{t\in[0,1]} \big[\sum_i H(e_{y_i} + t(p_i - e_{y_i})) - \tfrac{t^2}{2\beta}
  \|\bar X^\top (P - E)\|_F^2\big]` as a certified bound on the distance to the global optimum;
* ``linear_flat``: the same on the flattened tokens :math:`\mathrm{vec}(X)` (s d features): it knows
  token positions but does not mix, the baseline that tells a mixing head's use of positions from
  its use of mixing (see :mod:`.readouts`);
* ``mlp_relu``: non-convex two-layer ReLU net on :math:`\bar x` (:class:`cal.nonconvex.TwoLayerNet`);
* ``attention_softmax``: non-convex softmax multi-head attention, mean-pooled logits
  (:class:`cal.nonconvex.MultiHeadAttention`);
  both trained by minibatch Adam on the device (objective divided by n), no gap bound;
* convex heads (``mlp_gated_relu`` on the token mean; ``attention_linear``,
  ``attention_gated_relu``, ``mixer`` (linear), ``mixer_gated_relu``, ``fno`` (circulant),
  ``fno_spectral`` on the tokens): solved by ``cal.solvers.fit_head`` with its certified gap; test
  logits come from the non-convex network with the recovered weights (:func:`twin`).  Mean-pooled,
  ``fno`` is exactly a linear model on the token mean (:mod:`.readouts`); the token-mixing heads
  also take ``readout='token'`` (logits of token 0, still convex); ``fno_token`` is ``fno`` with it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..validation import class_labels, known_options, positive_int, positive_scalar, real_features, seed_value
from .cache import to_device
from .plan import PREDICT_ENTRIES


class HeadUnavailableError(RuntimeError):
    """A head whose solver is not installed in this version of the library."""


@dataclass
class HeadResult:
    """One trained head at one beta: test accuracy, size, time, device and optimality gap."""

    head: str
    beta: float
    top1: float
    top5: float
    params: int
    train_time_s: float
    device: str
    convex: bool
    gap_bound: float | None  # certified objective - lower bound (None for non-convex heads)
    rel_gap: float | None
    objective: float  # training objective (sum convention), float64
    train_top1: float
    n_train: int
    n_test: int
    tokens: int
    features: int
    units: int | None = None  # convex heads: neurons / heads / kernels recovered (the rank)
    twin_rel_diff: float | None = None  # convex heads: recovered network vs solver on train, relative
    options: dict = field(default_factory=dict)
    classes: int | None = None  # logits the trained head has (the data set's class count, see train_head)
    beta_max: float | None = None  # with beta_fraction: the beta_max that beta is a fraction of
    beta_fraction: float | None = None  # beta / beta_max when beta was given as a fraction (else None)
    beta_max_of: str | None = None  # whose beta_max: the head itself, or its family's convex program

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> "HeadResult":
        """A row of a results file back as a :class:`HeadResult` (rows of older files lack the later
        fields, which take their defaults; keys that are not fields, e.g. ``status``, are dropped)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True)
class HeadSpec:
    """A registered head: how to train it and whether it is convex."""

    name: str
    convex: bool
    description: str
    train: Callable


HEADS: dict[str, HeadSpec] = {}


def register(name: str, convex: bool, description: str):
    def deco(fn):
        HEADS[name] = HeadSpec(name, convex, description, fn)
        return fn
    return deco


def check_heads(names) -> list[str]:
    """Head names as a list; unknown names raise a ``ValueError`` listing the known ones."""
    if isinstance(names, str):
        names = [h for h in names.split(",") if h]
    names = list(names)
    bad = [h for h in names if h not in HEADS]
    if bad or not names:
        raise ValueError(f"unknown head(s) {', '.join(map(repr, bad)) or '(none given)'}; choose from "
                         f"{', '.join(HEADS)}")
    return names


def pooled(X: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Token mean (n, d) in float32, chunked over a (possibly memory-mapped) (n, s, d) array."""
    return np.concatenate([np.asarray(X[i:i + chunk], dtype=np.float32).mean(1)
                           for i in range(0, X.shape[0], chunk)])


def topk(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the k largest logits."""
    k = min(k, logits.shape[1])
    return float((logits.topk(k, dim=1).indices == y[:, None]).any(1).float().mean())


def predict_batched(model, X: torch.Tensor, batch_size: int, dtype) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(X[i:i + batch_size].to(dtype)).float()
                          for i in range(0, X.shape[0], batch_size)])


def n_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def adam_minibatch(model, X: torch.Tensor, y: torch.Tensor, beta: float, epochs: int, batch_size: int,
                   lr: float, seed: int, dtype=torch.float32, progress: bool = True, desc: str = "") -> float:
    r"""Minibatch Adam (cosine rate) on :math:`\frac1n[\sum_i \mathrm{CE}_i + \beta\,\mathrm{penalty}]`:
    each step uses the batch mean of CE plus :math:`\frac{\beta}{n}` penalty, an unbiased estimate.
    ``X`` stays in its storage dtype (fp16 on the device); batches are cast to ``dtype``.  Returns the
    last epoch's mean objective per sample."""
    from ..nonconvex.training import penalty

    n = X.shape[0]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    last = float("nan")
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        order = torch.randperm(n, generator=gen).to(X.device)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb, yb = X[idx].to(dtype), y[idx]
            f = torch.nn.functional.cross_entropy(model(xb), yb) + beta / n * penalty(model)
            opt.zero_grad(set_to_none=True)
            f.backward()
            opt.step()
            sched.step()
            total += float(f.detach()) * len(idx)
        last = total / n
    return last


def _sum_objective(logits: torch.Tensor, y: torch.Tensor, model, beta: float) -> float:
    from ..nonconvex.training import penalty

    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(logits.double(), y, reduction="sum")
        return float(ce + beta * penalty(model).double())


class LinearHead(torch.nn.Module):
    """Logits ``x W`` (no bias: every weight is penalised, as in the convex heads)."""

    def __init__(self, d: int, c: int, dtype=torch.float64):
        super().__init__()
        self.W = torch.nn.Parameter(torch.zeros(d, c, dtype=dtype))

    def forward(self, x):
        return x @ self.W


def linear_gap(P: np.ndarray, y: np.ndarray, Xbar: np.ndarray, beta: float, value: float):
    r"""Certified gap of the L2-regularised softmax regression at a point with probabilities P.

    Fenchel duality: :math:`p^\star \ge \sum_i H(q_i) - \frac{1}{2\beta}\|\bar X^\top V\|_F^2` for
    :math:`V = Q - E` with rows :math:`q_i` in the simplex; we take :math:`V = t(P - E)` and the best
    :math:`t\in[0,1]` (concave in t).  Returns ``(gap, lower_bound)``."""
    from scipy.optimize import minimize_scalar

    from ..losses import neg_conjugate, one_hot

    E = one_hot(y, P.shape[1])
    V = P - E
    xv = float(np.sum((Xbar.T @ V) ** 2))

    def neg_bound(t):
        return -(neg_conjugate(t * V, y, "cross_entropy") - t * t * xv / (2 * beta))

    res = minimize_scalar(neg_bound, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-12})
    lower = max(-res.fun, -neg_bound(1.0), -neg_bound(0.0))
    return value - lower, lower


@register("linear", convex=True, description="softmax regression on the token mean (convex, L-BFGS)")
def train_linear(data, beta, device, epochs, batch_size, lr, seed, progress, options):
    from ..nonconvex.training import fit_lbfgs

    Xtr = torch.from_numpy(pooled(data["X_train"])).to(device, torch.float64)
    ytr = data["y_train"].to(device)
    model = LinearHead(Xtr.shape[1], data["classes"]).to(device)
    fit_lbfgs(model, Xtr, ytr, beta, "cross_entropy", max_iter=options.get("lbfgs_iter", 1000), tol=1e-12)
    with torch.no_grad():
        logits = model(Xtr)
        value = _sum_objective(logits, ytr, model, beta)
        P = torch.softmax(logits, 1).cpu().numpy()
    gap, _ = linear_gap(P, ytr.cpu().numpy(), Xtr.cpu().numpy(), beta, value)
    Xte = torch.from_numpy(pooled(data["X_test"])).to(device, torch.float64)
    return model, value, gap, lambda m: (predict_batched(m, Xtr, 8192, torch.float64),
                                         predict_batched(m, Xte, 8192, torch.float64))


def flat_tokens(X) -> np.ndarray:
    """Tokens (n, s, d) seen as one token of the concatenated s d features, (n, 1, s d): a view
    (no copy) for numpy and memory-mapped arrays, so that :func:`pooled` returns the flattened
    tokens."""
    n, s, d = X.shape
    return X.reshape(n, 1, s * d)


@register("linear_flat", convex=True,
          description="softmax regression on the flattened tokens (s d features; convex, L-BFGS): "
                      "the baseline that knows token positions but does not mix")
def train_linear_flat(data, beta, device, epochs, batch_size, lr, seed, progress, options):
    r"""``linear`` on the concatenated token features: logits :math:`\mathrm{vec}(X)^\top W`, W (s d, c),
    penalty :math:`\tfrac\beta2\|W\|_F^2`, same solver and certificate.  Any head whose logits are
    linear in X (``mixer``, ``fno``, ``fno_spectral`` under any fixed readout) is such a model with another
    regulariser, so a token-mixing head's gain over ``linear`` that ``linear_flat`` matches comes
    from knowing positions, not from mixing."""
    flat = dict(data, X_train=flat_tokens(data["X_train"]), X_test=flat_tokens(data["X_test"]))
    return train_linear(flat, beta, device, epochs, batch_size, lr, seed, progress, options)


@register("mlp_relu", convex=False, description="two-layer ReLU net on the token mean (non-convex, Adam)")
def train_mlp_relu(data, beta, device, epochs, batch_size, lr, seed, progress, options):
    from ..nonconvex import TwoLayerNet

    Xtr = torch.from_numpy(pooled(data["X_train"])).to(device)
    ytr = data["y_train"].to(device)
    gen = torch.Generator().manual_seed(seed)
    model = TwoLayerNet(Xtr.shape[1], options.get("width", 512), data["classes"], "relu",
                        generator=gen, dtype=torch.float32).to(device)
    adam_minibatch(model, Xtr, ytr, beta, epochs, batch_size, lr, seed, progress=progress, desc="mlp_relu")
    Xte = torch.from_numpy(pooled(data["X_test"])).to(device)
    with torch.no_grad():
        value = _sum_objective(model(Xtr), ytr, model, beta)
    return model, value, None, lambda m: (predict_batched(m, Xtr, 8192, torch.float32),
                                          predict_batched(m, Xte, 8192, torch.float32))


@register("attention_softmax", convex=False,
          description="softmax multi-head self-attention, mean-pooled logits (non-convex, Adam)")
def train_attention_softmax(data, beta, device, epochs, batch_size, lr, seed, progress, options):
    from ..nonconvex import MultiHeadAttention

    Xtr = to_device(data["X_train"], device, torch.float16)
    ytr = data["y_train"].to(device)
    gen = torch.Generator().manual_seed(seed)
    model = MultiHeadAttention(Xtr.shape[2], options.get("attn_heads", 4), data["classes"], "softmax",
                               pool=True, generator=gen, dtype=torch.float32).to(device)
    adam_minibatch(model, Xtr, ytr, beta, epochs, batch_size, lr, seed, progress=progress,
                   desc="attention_softmax")
    Xte = to_device(data["X_test"], device, torch.float16)
    eval_bs = max(batch_size, 256)
    logits = predict_batched(model, Xtr, eval_bs, torch.float32)
    value = _sum_objective(logits, ytr, model, beta)
    return model, value, None, lambda m: (logits, predict_batched(m, Xte, eval_bs, torch.float32))


#: convex heads solved by ``cal.solvers.fit_head``: name -> (solver kind, activation, pooled input)
CONVEX_HEADS = {
    "mlp_gated_relu": ("mlp", "gated_relu", True),
    "attention_linear": ("self_attention", "linear", False),
    "attention_gated_relu": ("self_attention", "gated_relu", False),
    "mixer": ("mixer", "linear", False),
    "mixer_gated_relu": ("mixer", "gated_relu", False),
    "fno": ("fno", "circulant", False),
    "fno_spectral": ("fno", "spectral", False),
}


def solver_module():
    """``cvxattn_lib.solvers`` if it provides ``fit_head``, else :class:`HeadUnavailableError`."""
    try:
        from .. import solvers
    except ImportError as exc:
        raise HeadUnavailableError(
            "the convex heads need cvxattn_lib.solvers.fit_head (the scalable torch solvers), which is "
            f"not importable in this version of the library ({exc}); train the non-convex and linear "
            "heads for now (--heads linear,mlp_relu,attention_softmax)") from exc
    if not hasattr(solvers, "fit_head"):
        raise HeadUnavailableError("cvxattn_lib.solvers has no fit_head; update the library")
    return solvers


def convex_available(name: str) -> bool:
    """Whether the solver for convex head ``name`` is importable and registered."""
    try:
        solvers = solver_module()
    except HeadUnavailableError:
        return False
    kind = CONVEX_HEADS[name][0]
    return kind in getattr(solvers, "HEADS", {})


def _convex_trainer(name: str):
    kind, activation, pool = CONVEX_HEADS[name]

    def train(data, beta, device, epochs, batch_size, lr, seed, progress, options):
        solvers = solver_module()
        if kind not in getattr(solvers, "HEADS", {}):
            raise HeadUnavailableError(f"head {name!r} needs the convex solver kind {kind!r}, which "
                                       f"cal.solvers does not provide yet (it has: "
                                       f"{', '.join(getattr(solvers, 'HEADS', {}))})")
        # token heads get the features as they are (float32, or the fp16 memory map): the solver
        # copies them to the device in chunks, never as a full float64 array on the host
        get = pooled if pool else real_features_array
        Xtr, Xte = get(data["X_train"]), get(data["X_test"])
        ytr = data["y_train"].cpu().numpy()
        kw = dict(options.get("solver_options", {}))
        if activation != "gated_relu":  # gates concern the gated heads only (one grid, all heads)
            kw.pop("n_gates", None)
            kw.pop("gates", None)
        kw.setdefault("progress", progress)
        kw["classes"] = data["classes"]  # one logit per class of the data set, seen in y_train or not
        method = options.get("method", "fista")
        # every pass over the samples (gradients, certificate, predictions) in batches of the
        # command line's --batch-size: bounded memory, the same sums
        kw.setdefault("batch_size", batch_size)  # FISTA: evaluation chunks; Burer-Monteiro: Adam's
        if method == "burer_monteiro":
            kw.setdefault("eval_batch_size", batch_size)
        readout = options.get("readout", "mean")
        common = dict(method=method, device=device, activation=activation,
                      seed=seed, loss="cross_entropy", **kw)
        solver_kind = _readout_kind(name, kind, readout)
        if beta is None:  # beta = beta_fraction x this head's own beta_max (fit records both)
            fit = solvers.fit_head_fraction(solver_kind, Xtr, ytr, data["beta_fraction"], **common)
        else:
            fit = solvers.fit_head(solver_kind, Xtr, ytr, beta, **common)
        predict = _convex_predictions if readout == "mean" else _readout_predictions
        return fit, fit.value, fit.value - fit.lower_bound, lambda f: predict(f, Xtr, Xte, batch_size)

    return train


#: heads that mix tokens linearly in X and so take a ``readout`` other than the mean
READOUT_HEADS = ("mixer", "mixer_gated_relu", "fno", "fno_spectral")


def _readout_kind(name: str, kind: str, readout: str) -> str:
    """The solver kind of convex head ``name`` with ``readout`` (see :mod:`.readouts`)."""
    if readout == "mean":
        return kind
    if name not in READOUT_HEADS:
        raise ValueError(f"readout={readout!r} is for the token-mixing heads {', '.join(READOUT_HEADS)}; "
                         f"head {name!r} takes readout='mean' only")
    from .readouts import readout_kind

    return readout_kind(kind, readout)


def real_features_array(X) -> np.ndarray:
    """Token features for a convex solver: float16/32/64 arrays (memory maps included) as they
    are, anything else as float32 (read in chunks by :func:`pooled`'s rule: no float64 copy)."""
    if isinstance(X, np.ndarray) and X.dtype in (np.float16, np.float32, np.float64):
        return X
    return np.asarray(X, dtype=np.float32)




def predict_chunks(net, X, batch_size: int) -> np.ndarray:
    """``net.predict`` (float64 numpy) over chunks of at most ``batch_size`` samples: the same
    outputs (each row depends on its own sample only), with memory bounded.  A token network of m
    units (attention: (b, m, t, t) scores and (b, m, t, d) products) gets chunks of at most
    :data:`PREDICT_ENTRIES` / (m t (t + d + c)) samples (at least one)."""
    b = batch_size
    shapes = [tuple(p.shape) for p in net.parameters() if p.ndim == 3]  # (m, ., .) weights
    if X.ndim == 3 and shapes:
        m, c, (t, d) = max(s[0] for s in shapes), max(s[2] for s in shapes), X.shape[1:]
        b = max(1, min(b, PREDICT_ENTRIES // max(m * t * (t + d + c), 1)))
    return np.concatenate([net.predict(np.asarray(X[i:i + b], dtype=np.float64))
                           for i in range(0, X.shape[0], b)])


def _readout_predictions(fit, Xtr, Xte, batch_size=None):
    """Train logits (the solver's outputs), test logits (the fitted head's own forward map on the
    test tokens, :func:`.readouts.head_logits`) and None (no recovered network to compare)."""
    from .readouts import head_logits

    train = torch.as_tensor(np.asarray(fit.prediction(), dtype=np.float64))
    b = batch_size or max(Xte.shape[0], 1)
    test = np.concatenate([head_logits(fit, Xte[i:i + b]) for i in range(0, Xte.shape[0], b)])
    return train.float(), torch.as_tensor(test).float(), None


def recovered_units(fit) -> int:
    """Neurons / heads / kernels the solution uses: singular values of the Z_j above
    ``fit.rank_tol`` times the largest (or 1), as in ``fit.weights()``."""
    svals = fit.singular_values()
    top = max([float(np.max(v, initial=0.0)) for v in svals] + [0.0])
    tol = fit.rank_tol * max(top, 1.0)
    return int(sum(int(np.sum(v > tol)) for v in svals))


def twin(fit, tokens: int):
    """The non-convex network with the weights recovered from a convex fit (float64), which
    predicts on new data; None when the solution is zero (beta above the largest dual norm)."""
    from ..nonconvex import MultiHeadAttention, TwoLayerNet
    from ..nonconvex.mixer import FNOHead, MixerHead

    if recovered_units(fit) == 0:
        return None
    w = fit.weights()
    if fit.kind == "mlp":
        return TwoLayerNet.from_weights(w, fit.activation)
    if fit.kind == "self_attention":
        return MultiHeadAttention.from_weights(w, fit.activation, pool=True)
    if fit.kind == "mixer":
        return MixerHead.from_weights(w, fit.activation, pool=True)
    if fit.kind == "fno":
        return FNOHead.from_weights(dict(w, s=tokens), fit.activation, pool=True)
    raise HeadUnavailableError(f"no non-convex twin to predict with a {fit.kind!r} fit on new data")


def _convex_predictions(fit, Xtr, Xte, batch_size=None):
    """Train logits (the solver's own outputs) and test logits (the recovered twin on the test
    tokens, ``batch_size`` samples at a time); also the largest difference of the twin's train
    logits from the solver's, relative to their scale (recovery is exact, so this is round-off)."""
    train = torch.as_tensor(np.asarray(fit.prediction(), dtype=np.float64))
    net = twin(fit, Xtr.shape[1] if Xtr.ndim == 3 else 1)
    if net is None:  # all-zero solution: logits zero everywhere
        return train.float(), torch.zeros(Xte.shape[0], train.shape[1]), 0.0
    b = batch_size or max(Xtr.shape[0], 1)
    mine = torch.as_tensor(predict_chunks(net, Xtr, b))
    rel = float((mine - train).abs().max() / max(float(train.abs().max()), 1e-12))
    return train.float(), torch.as_tensor(predict_chunks(net, Xte, b)).float(), rel


for _name, (_kind, _act, _pool) in CONVEX_HEADS.items():
    HEADS[_name] = HeadSpec(_name, True, f"convex {_kind}" + (f" ({_act})" if _act else "")
                            + " via cal.solvers.fit_head", _convex_trainer(_name))


#: convex heads trained with another readout than the mean (:mod:`.readouts`): name -> (head, readout).
#: ``fno_token`` is ``fno`` with the logits of token 0: mean-pooled, ``fno`` is exactly a linear
#: model on the token mean; with the token readout it is a linear model on the flattened tokens.
READOUT_VARIANTS = {"fno_token": ("fno", "token")}


def _readout_trainer(base: str, readout: str):
    inner = _convex_trainer(base)

    def train(data, beta, device, epochs, batch_size, lr, seed, progress, options):
        options = dict(options, readout=readout)
        return inner(data, beta, device, epochs, batch_size, lr, seed, progress, options)

    return train


for _name, (_base, _readout) in READOUT_VARIANTS.items():
    HEADS[_name] = HeadSpec(_name, True, f"{_base} with readout={_readout!r} (logits of token 0) via "
                            "cal.solvers.fit_head", _readout_trainer(_base, _readout))


def available_heads() -> list[str]:
    """Heads that can be trained with this library (convex ones need their solver)."""
    def needs(h):
        return READOUT_VARIANTS[h][0] if h in READOUT_VARIANTS else h
    return [h for h in HEADS if needs(h) not in CONVEX_HEADS or convex_available(needs(h))]


#: heads whose penalty is a squared norm, which have no beta_max of their own (zero is optimal only
#: where the gradient at zero vanishes), and the convex program whose beta_max their
#: ``beta_fraction`` is a fraction of: head -> (name recorded as ``beta_max_of``, solver kind,
#: activation, inputs).  ``linear`` and ``linear_flat`` take that of the two-layer linear network on
#: the same inputs (``fit_head('mlp', activation='linear')``, the program
#: :math:`\min_W \mathrm{CE} + \beta\|W\|_*`), whose beta_max is the spectral norm of the linear
#: head's gradient at W = 0; their own (ridge) solution is not zero at f >= 1.  ``mlp_relu`` takes
#: that of ``mlp_gated_relu`` (the same weights W1, W2 under the same weight decay, so at one fraction
#: the two share one absolute beta).  ``attention_softmax`` takes that of ``linear``: at W1 = 0 its
#: attention weights are uniform and its mean-pooled logits are exactly the linear head on the token
#: mean, :math:`\bar x\sum_j W_{2j}`; linear attention's beta_max would not do (its logits are cubic in
#: the tokens, softmax attention's linear in the values; measured on the digits it over-regularised
#: softmax attention).  :mod:`.compare` reads its references from here.
BETA_MAX_OF = {
    "linear": ("mlp(linear) on the token mean", "mlp", "linear", "mean"),
    "linear_flat": ("mlp(linear) on the flattened tokens", "mlp", "linear", "flat"),
    "mlp_relu": ("mlp_gated_relu", "mlp", "gated_relu", "mean"),
    "attention_softmax": ("linear", "mlp", "linear", "mean"),
}


def reference_beta_max(name: str, X, y, classes: int, seed: int = 0, device=None,
                       solver_options: dict | None = None, readout: str = "mean") -> tuple[float, str]:
    """``(beta_max, of)``: the beta_max that head ``name``'s ``beta_fraction`` is a fraction of, on
    tokens X (n, s, d) with labels y, and whose it is (the head itself for the convex heads solved by
    ``fit_head``, else :data:`BETA_MAX_OF`).  Exact (float64, :func:`cal.solvers.beta_max`), with
    the gates the convex head would draw for the same ``seed`` and ``solver_options`` (``n_gates``,
    ``gates``, and the power-iteration options)."""
    solvers = solver_module()
    so = dict(solver_options or {})
    if name in BETA_MAX_OF:
        of, kind, activation, inputs = BETA_MAX_OF[name]
        Xr = pooled(flat_tokens(X)) if inputs == "flat" else pooled(X) if inputs == "mean" else X
    else:
        base, readout = READOUT_VARIANTS.get(name, (name, readout))
        if base not in CONVEX_HEADS:
            raise ValueError(f"head {name!r} has no beta_max; choose from {', '.join(HEADS)}")
        kind, activation, pool = CONVEX_HEADS[base]
        kind, of = _readout_kind(base, kind, readout), name
        Xr = pooled(X) if pool else X
    if not isinstance(Xr, np.ndarray) or Xr.dtype != np.float64:
        Xr = np.asarray(Xr, dtype=np.float64)
    gated = {k: so[k] for k in ("n_gates", "gates") if k in so and activation == "gated_relu"}
    power = {k: so[k] for k in ("batch_size", "power_iter", "power_tol", "block", "explicit_limit")
             if k in so}
    bmax = solvers.beta_max(kind, Xr, y, device=device, activation=activation, seed=seed,
                            loss="cross_entropy", classes=classes, **gated, **power)
    if not bmax > 0:
        raise ValueError(f"beta_max of {of} is {bmax:g} on these features (the gradient at zero vanishes); "
                         "give an absolute beta instead of beta_fraction")
    return float(bmax), of


#: the options of :func:`train_head` (the command line passes all of them to every head)
TRAIN_OPTIONS = ("width", "attn_heads", "lbfgs_iter", "method", "solver_options", "readout")


def _check_options(options: dict) -> None:
    """Unknown names and bad values of :func:`train_head`'s options, before any work."""
    known_options("train_head", options, TRAIN_OPTIONS)
    for key in ("width", "attn_heads", "lbfgs_iter"):
        if key in options:
            positive_int(key, options[key])
    if "method" in options:
        if options["method"] not in ("fista", "burer_monteiro"):  # cal.solvers.METHODS
            raise ValueError(f"method must be one of 'fista', 'burer_monteiro'; got {options['method']!r}")
    if options.get("readout", "mean") not in ("mean", "token"):  # cal.cifar.readouts.READOUTS
        raise ValueError(f"readout must be 'mean' or 'token'; got {options['readout']!r}")
    if not isinstance(options.get("solver_options", {}), dict):
        raise TypeError(f"solver_options must be a dict of cal.solvers.fit_head options, got "
                        f"{options['solver_options']!r}")


def train_head(name: str, X_train, y_train, X_test, y_test, beta: float | None = None, device=None,
               epochs: int = 10, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
               progress: bool = True, classes: int = 100, return_model: bool = False,
               beta_fraction: float | None = None, **options):
    """Train head ``name`` at ``beta`` on (X_train (n, s, d), y_train) and score it on the test split.

    Give exactly one of ``beta`` (absolute) and ``beta_fraction`` (f > 0: beta = f x beta_max, the
    head's own for the convex heads solved by ``fit_head``, whose solution is zero at f >= 1, else
    that of its family's convex program, :data:`BETA_MAX_OF`); the result records ``beta``,
    ``beta_max``, ``beta_fraction`` and ``beta_max_of`` (the last three None with an absolute beta).
    Every head has ``classes`` logits, one per class of the data set, whether or not y_train holds it.

    Returns a :class:`HeadResult` (top-1/top-5 test accuracy, parameters, training time, device, gap
    bound); with ``return_model`` also the trained model (a torch module, or the convex
    ``cal.solvers.HeadFit``) as ``(result, model)``.  Options: ``width`` (mlp_relu hidden units,
    512), ``attn_heads`` (4), ``lbfgs_iter``
    (linear, 1000), ``method`` and ``solver_options`` (convex heads, passed to ``fit_head``),
    ``readout`` (``'mean'``, default, or ``'token'``: logits of token 0, for the heads in
    :data:`READOUT_HEADS`; see :mod:`.readouts`); each
    head uses the ones that concern it, and an unknown name raises a ``TypeError``.  Features must
    be real and finite, labels integers in ``[0, classes)``; each bad input raises an error naming
    the argument before any training."""
    from ..runtime import device as pick_device

    spec = HEADS[check_heads([name])[0]]
    if (beta is None) == (beta_fraction is None):
        raise TypeError(f"train_head takes exactly one of beta and beta_fraction, got beta={beta!r} and "
                        f"beta_fraction={beta_fraction!r}")
    beta = None if beta is None else positive_scalar("beta", beta)
    if beta_fraction is not None:
        beta_fraction = positive_scalar("beta_fraction", beta_fraction)
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    lr = positive_scalar("lr", lr)
    seed = seed_value("seed", seed)
    classes = positive_int("classes", classes)
    _check_options(options)
    if "readout" in options and (name in READOUT_VARIANTS or (options["readout"] != "mean"
                                                               and name not in READOUT_HEADS)):
        raise ValueError(f"readout={options['readout']!r} is for the token-mixing heads "
                         f"{', '.join(READOUT_HEADS)}; head {name!r} takes no readout option")
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    real_features("X_train", X_train, 3)
    real_features("X_test", X_test, 3)
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(f"X_train and X_test must be tokens (n, s, d) of the same s, d; got "
                         f"{X_train.shape} and {X_test.shape}")
    ytr = torch.as_tensor(class_labels("y_train", y_train, X_train.shape[0], classes))
    yte = torch.as_tensor(class_labels("y_test", y_test, X_test.shape[0], classes))
    data = {"X_train": X_train, "y_train": ytr, "X_test": X_test, "classes": int(classes),
            "beta_fraction": beta_fraction}
    own = name in CONVEX_HEADS or name in READOUT_VARIANTS  # fit_head_fraction finds its own beta_max
    torch.manual_seed(seed)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    bmax = of = None
    if beta_fraction is not None and not own:  # the family's beta_max (counted in the training time)
        bmax, of = reference_beta_max(name, X_train, ytr.numpy(), int(classes), seed, dev,
                                      options.get("solver_options"))
        beta = beta_fraction * bmax
    model, value, gap, predict = spec.train(data, beta, dev, epochs, batch_size, lr, seed, progress, options)
    if beta is None:  # a convex fit at beta_fraction x its own beta_max: it records both
        beta, bmax, of = float(model.beta), float(model.beta_max), name
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elapsed = time.perf_counter() - t0
    preds = predict(model)
    tr_logits, te_logits = preds[0].cpu(), preds[1].cpu()
    built = int(tr_logits.shape[1])
    if built != classes or te_logits.shape[1] != classes:  # every head takes the class count
        raise RuntimeError(f"head {name!r} returned {built} logits for a data set of {classes} classes")
    units = twin_diff = None
    if hasattr(model, "parameters"):
        params = n_params(model)
    else:  # a convex fit: the entries of its recovered non-convex weights (gates excluded)
        units, twin_diff = recovered_units(model), preds[2]
        params = 0 if units == 0 else int(sum(np.size(v) for k, v in model.weights().items() if k != "G"))
    result = HeadResult(head=name, beta=beta, top1=topk(te_logits, yte, 1), top5=topk(te_logits, yte, 5),
                        params=params, train_time_s=elapsed, device=str(dev), convex=spec.convex,
                        gap_bound=None if gap is None else float(gap),
                        rel_gap=None if gap is None else float(gap) / max(abs(value), 1e-300),
                        objective=float(value), train_top1=topk(tr_logits, ytr, 1),
                        n_train=int(X_train.shape[0]), n_test=int(X_test.shape[0]),
                        tokens=int(X_train.shape[1]), features=int(X_train.shape[2]), units=units,
                        twin_rel_diff=twin_diff, classes=built, beta_max=bmax,
                        beta_fraction=beta_fraction, beta_max_of=of,
                        options={"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                                 **options})
    return (result, model) if return_model else result
