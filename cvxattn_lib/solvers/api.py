"""``fit_head``: one entry point for every convex head and solver, returning a :class:`HeadFit`."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..certificates import Certificate
from ..nonconvex.training import cpu_threads_for
from ..runtime import device as pick_device
from ..validation import (check_fits_in_memory, choice, in_interval, nonnegative_scalar, positive_int,
                          positive_scalar, seed_value, total_memory)
from .burer_monteiro import burer_monteiro
from .certify import compact_svd, to64
from .fista import fista
from .heads import HEADS, ConvexHead

METHODS = ("fista", "burer_monteiro")
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class HeadFit:
    """What every torch solver returns: the objective, its float64 certificate and the solution.

    ``value`` = L + beta sum_j ||Z_j||_* at the returned point (float64); ``lower_bound`` a
    certified lower bound on the optimum (weak duality); ``rel_gap`` = (value - lower_bound) / value.
    ``stationary_bound`` (Burer–Monteiro only): (||grad_Z F||_2 / beta - 1)_+, a bound on the
    relative suboptimality valid at a stationary point of the factored problem.
    """

    kind: str
    activation: str
    loss: str
    beta: float
    method: str
    device: str
    dtype: str
    value: float
    lower_bound: float
    rel_gap: float
    dual_norm: float
    iterations: int
    wall_time: float
    converged: bool
    message: str
    certificate: Certificate = field(repr=False)
    head: ConvexHead = field(repr=False)
    history: list = field(repr=False, default_factory=list)
    stationary_bound: float | None = None
    info: dict = field(repr=False, default_factory=dict)
    _Z: torch.Tensor | None = field(repr=False, default=None)
    _factors: tuple | None = field(repr=False, default=None)
    rank_tol: float = 1e-7
    beta_max: float | None = None  # the smallest beta with Z = 0 optimal (fit_head_fraction)
    beta_fraction: float | None = None  # beta / beta_max (fit_head_fraction)

    @property
    def gates(self) -> np.ndarray:
        """The gates used (as in the matching ``cal.convex`` fit; empty for linear heads)."""
        return self.head.G

    @property
    def Z(self) -> list[np.ndarray]:
        """The lifted matrices Z_j (p, q), float64 numpy (formed from the factors for
        Burer–Monteiro: only ask for them when they fit in memory)."""
        if self._Z is not None:
            Z = to64(self._Z)
        else:
            U, V = self._factors
            Z = to64(U) @ to64(V).transpose(1, 2)
        Z = Z.cpu().numpy()
        if not self.head.complex:
            return list(Z)
        from ..nonconvex.mixer import self_conjugate
        return [z.real.copy() if sc else z for z, sc in zip(Z, self_conjugate(self.head.s))]

    def _svd(self):
        if self._Z is not None:
            A, s, Bh = torch.linalg.svd(to64(self._Z), full_matrices=False)
            return A, s, Bh.transpose(1, 2)
        return compact_svd(*self._factors)

    def weights(self) -> dict[str, np.ndarray]:
        """Non-convex weights reaching :attr:`value`, in the names and shapes of the matching
        ``cal.convex`` fit (``W1``, ``W2`` and ``G`` for gated heads): balanced factors of each
        Z_j, keeping singular values above ``rank_tol`` times the largest (or 1)."""
        if self.head.complex:  # per mode, real SVDs at the real (self-conjugate) modes
            svds = [np.linalg.svd(z, full_matrices=False) for z in self.Z]
            A, s, B = ([u for u, _, _ in svds], np.stack([sv for _, sv, _ in svds]),
                       [vh.T for _, _, vh in svds])
        else:
            A, s, B = (t.cpu().numpy() for t in self._svd())
        tol = self.rank_tol * max(float(s.max(initial=0.0)), 1.0)
        As, Bs = [], []
        for j in range(s.shape[0]):
            keep = s[j] > tol
            r = np.sqrt(s[j][keep])
            As.append(A[j][:, keep] * r)
            Bs.append(r[:, None] * B[j][:, keep].T)
        return self.head.weights_from_factors(As, Bs)

    def prediction(self) -> np.ndarray:
        """Outputs on the training data in the loss's rows ((n s, c) tokens or (n, c) logits)."""
        return self.info["prediction"]

    def singular_values(self) -> list[np.ndarray]:
        """Singular values of each Z_j (descending)."""
        return [s for s in self._svd()[1].cpu().numpy()]


def _options(fn, options: dict, method: str):
    params = inspect.signature(fn).parameters.values()
    allowed = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD
               and p.name not in ("head", "beta", "head64", "seed")]
    allowed += ["power_iter", "power_tol", "block", "explicit_limit", "dtype"]
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, bad))} for method={method!r}; "
                        f"valid options: {', '.join(sorted(set(allowed)))}")


def _lifted_shape(kind, X, Y, activation, gates, n_gates, loss, item, classes=None):
    """``((P, p, q), host, device)`` for the data's sizes: the shape of Z and ``{array: bytes}`` of
    what is built beside it in host memory (numpy) and on the device (torch, ``item`` bytes an
    entry); None when the sizes cannot be read (``build`` then reports the bad argument)."""
    shape = np.shape(X)
    try:
        c = ((int(classes) if classes is not None else int(np.max(Y)) + 1 if np.size(Y) else 1)
             if loss == "cross_entropy" else
             (np.shape(Y)[-1] if np.ndim(Y) == len(shape) else 1))
    except (TypeError, ValueError, OverflowError):
        return None
    c = max(c, 1)
    square = {"mlp": 32, "self_attention": 8, "mixer": 8}.get(kind)
    if activation == "linear" or square is None:
        P = 1
    elif gates is not None:
        P = np.shape(gates)[1 if kind == "mlp" else 0] if np.ndim(gates) >= 2 else 1
    else:
        P = square if n_gates is None else positive_int("n_gates", n_gates)
    n_x = int(np.prod(shape, dtype=np.float64))
    host = {f"X {tuple(shape)} in float64": 8 * n_x}
    device = {f"X {tuple(shape)} on the device": item * n_x}
    if kind == "mlp" and len(shape) == 2:
        n, d = shape
        if activation != "linear":
            host[f"gates (d, P) = ({d}, {P}) float64"] = 8 * d * P
            host[f"patterns (n, P) = ({n}, {P}) bool"] = n * P
            device[f"patterns (n, P) = ({n}, {P}) on the device"] = item * n * P
        return (P, d, c), host, device
    if len(shape) != 3:
        return None
    n, s, d = shape
    if kind in ("self_attention", "mixer"):
        g, (k, m), Zshape = ((f"(P, d, d) = ({P}, {d}, {d})", (d, s), (P, d * d, d * c))
                             if kind == "self_attention" else
                             (f"(P, s, s) = ({P}, {s}, {s})", (s, d), (P, s * s, d * c)))
        if activation != "linear":
            host[f"gates {g} float64"] = 8 * P * (d * d if kind == "self_attention" else s * s)
            masks = f"masks (P, n, s, {'s' if kind == 'self_attention' else 'd'}) = ({P}, {n}, {s}, {m})"
            host[masks + " bool"] = P * n * s * m
            device[masks + " on the device"] = P * n * s * m
        return Zshape, host, device
    if kind == "fno":
        return ((1, s, d * c) if activation == "circulant" else (s // 2 + 1, d, c)), host, device
    return None


def _check_memory(kind, X, Y, activation, gates, n_gates, loss, method, options, dtype, dev, classes=None):
    """Refuse sizes whose arrays cannot fit in memory, before allocating any of them: a lower
    bound from the data, the gates, patterns or masks, and the lifted Z (FISTA holds at least
    five copies of it: iterate, extrapolation, gradient, step and prox) or the factors
    (Burer-Monteiro: factors, gradients and Adam's two moments).  Host arrays are held against
    the machine's memory, device arrays against the GPU's (on a CPU, all against the first)."""
    item = torch.empty((), dtype=dtype).element_size()
    sizes = _lifted_shape(kind, X, Y, activation, gates, n_gates, loss, item, classes)
    if sizes is None:
        return
    (P, p, q), host, device = sizes
    zitem = item * (2 if activation == "spectral" else 1)  # complex Z for the spectral FNO head
    if method == "fista":
        device[f"lifted Z (P, p, q) = ({P}, {p}, {q}), 5 copies"] = 5 * P * p * q * zitem
    else:
        r = options.get("rank") or min(p, q, 64)
        device[f"factors (P, p + q, rank) = ({P}, {p + q}, {r}), 4 copies"] = 4 * P * (p + q) * r * zitem
    hint = ("use fewer gates (n_gates), fewer samples or tokens, or reduced features"
            + ("" if method == "burer_monteiro" else ", or method='burer_monteiro' (factors, not Z)"))
    where = f"fit_head(kind={kind!r}, n_gates={n_gates!r}, method={method!r})"
    if dev.type == "cuda":
        check_fits_in_memory(where + " on the host", host, total_memory(), hint)
        check_fits_in_memory(where + f" on {dev}", device, total_memory(dev), hint)
    else:
        check_fits_in_memory(where, {**host, **device}, total_memory(), hint)


def fit_head(kind: str, X, Y, beta, method: str = "fista", device=None, activation: str | None = None,
             gates=None, n_gates=None, seed: int = 0, loss: str = "squared", classes: int | None = None,
             **options) -> HeadFit:
    """Solve the convex program of a head with torch, on CPU or CUDA, with a float64 certificate.

    ``kind``: a registered head (:data:`cal.solvers.HEADS`: ``'mlp'``, ``'self_attention'``,
    ``'mixer'``, ``'fno'``); ``X``, ``Y``, ``activation``, ``gates``, ``n_gates``, ``seed``,
    ``loss`` as the matching ``cal.convex.fit_*`` (same gates for the same seed); ``activation``
    defaults to ``'gated_relu'`` for ``mlp``, ``'linear'`` for ``self_attention`` and ``mixer``,
    and for ``fno`` names the mixing (``'circulant'`` default, or ``'spectral'``).
    ``classes`` (``loss='cross_entropy'`` only): the data set's class count, the number of logits
    (labels must lie below it; default: the labels' max + 1, so a class absent from ``Y`` gets no
    logit).
    ``method``: ``'fista'`` (full batch, lifted Z; options ``max_iter``, ``tol`` (certified relative
    gap to stop at, default 1e-6), ``check_every``, ``batch_size`` (evaluation chunks), ``L0``,
    ``shrink``) or ``'burer_monteiro'`` (factors; options ``rank`` (columns per gate, default
    min(p, q, 64)), ``epochs``, ``batch_size``, ``lr``, ``polish_iter``, ``init_scale``, ``tol``,
    ``eval_batch_size``).  Both: ``dtype`` (``'float64'`` default; ``'float32'``/``'bfloat16'``
    for training on a GPU, the certificate is always float64), ``progress``, ``power_iter``,
    ``power_tol``, ``block``, ``explicit_limit`` (spectral norms by SVD up to this many entries, else power
    iteration).  ``device``: ``'cpu'``, ``'cuda'``, ... (default: CUDA when available).
    """
    kind = choice("kind", kind, tuple(HEADS))
    method = choice("method", method, METHODS)
    beta = positive_scalar("beta", beta)
    seed = seed_value("seed", seed)
    loss = choice("loss", loss, ("squared", "cross_entropy"))
    dev = pick_device(device)
    fn = fista if method == "fista" else burer_monteiro
    _options(fn, options, method)
    dtype_name = options.pop("dtype", "float64")
    dtype = DTYPES[choice("dtype", dtype_name, tuple(DTYPES))]
    if method == "fista" and dtype == torch.bfloat16:
        raise ValueError("dtype='bfloat16' is for method='burer_monteiro' (FISTA needs SVDs, which "
                         "torch has in float32/float64 only); use dtype='float32' with FISTA")
    for name in ("tol", "power_tol"):
        if name in options:
            nonnegative_scalar(name, options[name])
    for name in ("L0", "lr", "init_scale"):
        if name in options:
            positive_scalar(name, options[name])
    if "shrink" in options:  # L_k *= shrink each iteration: 1 keeps plain backtracking
        in_interval("shrink", options["shrink"], 0.0, 1.0, closed_high=True)
    classes = _classes(classes, loss)
    cls = HEADS[kind]
    activation = cls.DEFAULT_ACTIVATION if activation is None else activation
    _check_memory(kind, X, Y, activation, gates, n_gates, loss, method, options, dtype, dev, classes)
    head = cls.build(X, Y, activation, gates, n_gates, seed, loss, dev, dtype, classes=classes)
    head64 = head if dtype == torch.float64 else head.with_dtype(torch.float64)
    if method == "burer_monteiro":
        options.setdefault("seed", seed)
    for name in ("max_iter", "epochs", "rank", "check_every", "batch_size", "polish_iter",
                 "eval_batch_size", "power_iter", "block", "explicit_limit"):
        if options.get(name) is not None:
            positive_int(name, options[name], minimum=0 if name in ("epochs", "polish_iter",
                                                                    "explicit_limit") else 1)
    work = int(np.prod(head.shape)) * head.n
    with cpu_threads_for(work, dev):
        out = fn(head, beta, head64=head64, **options)
    ev = out["evaluation"]
    c = ev.certificate
    tol = options.get("tol", 1e-6)
    if out["converged"]:
        message = f"certified relative gap {c.rel_gap:.2e} <= tol {tol:g}"
    elif method == "fista":
        message = (f"FISTA stopped after max_iter={out['iterations']} iterations with certified "
                   f"relative gap {c.rel_gap:.2e} > tol {tol:g}: raise max_iter, loosen tol, or "
                   "rescale X/Y (a large beta range or badly scaled data slows FISTA)")
    else:
        message = (f"Burer-Monteiro ended with certified relative gap {c.rel_gap:.2e} > tol {tol:g} "
                   f"(stationary bound {out['info']['stationary_bound']:.2e}): raise rank, epochs or "
                   "polish_iter, or use method='fista' when Z fits in memory")
    if not out["converged"]:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    info = dict(out["info"], prediction=ev.prediction, dual_method=ev.dual.method,
                power_iterations=ev.dual.iterations, power_rel_change=ev.dual.rel_change)
    return HeadFit(kind=kind, activation=activation, loss=loss, beta=beta, method=method,
                   device=str(dev), dtype=dtype_name, value=ev.value, lower_bound=c.lower_bound,
                   rel_gap=c.rel_gap, dual_norm=c.dual_norm, iterations=out["iterations"],
                   wall_time=out["wall_time"], converged=out["converged"], message=message,
                   certificate=c, head=head64, history=out["history"],
                   stationary_bound=out["info"].get("stationary_bound"), info=info,
                   _Z=out.get("Zt"), _factors=out.get("factors"))


def _classes(classes, loss: str) -> int | None:
    """``classes`` checked: None, or an integer >= 1 with ``loss='cross_entropy'``."""
    if classes is None:
        return None
    if loss != "cross_entropy":
        raise ValueError(f"classes is for loss='cross_entropy' (the number of logits); with "
                         f"loss={loss!r} the outputs are Y's columns; got classes={classes!r}")
    return positive_int("classes", classes)


def beta_max(kind: str, X, Y, device=None, activation: str | None = None, gates=None, n_gates=None,
             seed: int = 0, loss: str = "squared", batch_size: int | None = None,
             classes: int | None = None, **power) -> float:
    r"""The head's beta_max: the smallest beta at which Z = 0 is optimal,
    :math:`\max_j\|\mathcal{A}_j^*(\nabla L(0))\|_2` (float64; the exact largest singular value by
    SVD when :math:`\mathcal{A}^*` fits in ``explicit_limit`` entries, see
    :func:`.certify.beta_max`).  Arguments as :func:`fit_head` (same gates for the same seed);
    ``power``: ``explicit_limit``, ``power_iter``, ``power_tol``, ``block``."""
    head = _build_head(kind, X, Y, device, activation, gates, n_gates, seed, loss, classes)
    return _beta_max_of(head, batch_size, power)


def _build_head(kind, X, Y, device, activation, gates, n_gates, seed, loss, classes=None):
    kind = choice("kind", kind, tuple(HEADS))
    seed = seed_value("seed", seed)
    loss = choice("loss", loss, ("squared", "cross_entropy"))
    classes = _classes(classes, loss)
    cls = HEADS[kind]
    activation = cls.DEFAULT_ACTIVATION if activation is None else activation
    return cls.build(X, Y, activation, gates, n_gates, seed, loss, pick_device(device), torch.float64,
                     classes=classes)


def _beta_max_of(head, batch_size, power) -> float:
    from .certify import beta_max as head_beta_max

    with cpu_threads_for(int(np.prod(head.shape)) * head.n, head.Xt.device):
        bm = head_beta_max(head, batch_size, **power)
    if bm.method != "svd":
        warnings.warn(f"beta_max by power iteration (relative change {bm.rel_change:.1e}): a lower "
                      "bound on the exact value; raise explicit_limit for the SVD", RuntimeWarning,
                      stacklevel=3)
    return bm.value


def fit_head_fraction(kind: str, X, Y, beta_fraction, method: str = "fista", device=None,
                      activation: str | None = None, gates=None, n_gates=None, seed: int = 0,
                      loss: str = "squared", classes: int | None = None, **options) -> HeadFit:
    """:func:`fit_head` at beta = ``beta_fraction`` x the head's own :func:`beta_max` (the glmnet
    lambda / lambda_max convention: one fraction means the same for every head, whose beta_max
    differ by orders of magnitude).  ``beta_fraction`` > 0; at >= 1 the solution is Z = 0.  The
    result records ``beta`` (absolute), ``beta_max`` and ``beta_fraction``.  Other arguments and
    options as :func:`fit_head` (``batch_size``, ``explicit_limit``, ... also serve beta_max)."""
    beta_fraction = positive_scalar("beta_fraction", beta_fraction)
    head = _build_head(kind, X, Y, device, activation, gates, n_gates, seed, loss, classes)
    power = {k: options[k] for k in ("power_iter", "power_tol", "block", "explicit_limit")
             if k in options}
    bmax = _beta_max_of(head, options.get("batch_size"), power)
    if bmax <= 0:
        raise ValueError(f"beta_max is {bmax:g} for this data (the gradient at Z = 0 vanishes: Z = 0 "
                         "is optimal for every beta); pass an absolute beta to fit_head instead")
    fit = fit_head(kind, X, Y, beta_fraction * bmax, method=method, device=device,
                   activation=activation, gates=gates, n_gates=n_gates, seed=seed, loss=loss,
                   classes=classes, **options)
    fit.beta_max, fit.beta_fraction = bmax, beta_fraction
    return fit
