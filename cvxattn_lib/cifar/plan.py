r"""A plan before any work: each head's peak host and device memory and its time per iteration,
from the sizes alone (no features read), and the reduction / method that makes a head fit.

**Sizes.** n train and n' test images, s tokens of d features (after ``--reduce-tokens`` t and
``--reduce-dim`` d', written t, d below), c classes, batch size b (``--batch-size``: every pass over
the samples of every head goes in batches of b), solver dtype of w bytes (``--solver-option dtype``,
8 by default; certificates always in float64, 8 bytes), P gates (8 for gated attention and Mixer,
at most 32 patterns for the gated MLP), rank r (Burer–Monteiro, default min(p, q, 64)).

**What the code allocates** (entries; times the bytes of their dtype):

* features on the host: the fp16 cache is memory-mapped (its pages are file cache, reclaimable,
  not counted); a reduction makes float32 arrays, train (n t d) and test (n' t d), the train one
  twice while its chunks are concatenated (``cache.reduce_features``);
* the linear heads: the pooled (token mean, or flattened for ``linear_flat``) train features twice
  on the host (chunks + result), float64 copies on the device, logits / softmax / gradient (n c)
  four times, L-BFGS's 50 pairs of (d c) vectors, the certificate's three (n c) float64 arrays on
  the host;
* Adam heads: features on the device (float32 pooled; fp16 tokens for attention), four copies of
  the parameters (values, gradients, two moments), a batch's activations kept for the backward pass
  (softmax attention: the (b, heads, t, t) scores three times);
* convex heads, data on the device: the tokens (n t d) in the solver dtype and again in float64 for
  the certificate (shared when the solver dtype is float64), gate masks as booleans (P n t t for
  attention, P n t d for Mixer; shared by both dtypes), patterns (n, P) for the MLP; on the host the
  masks are computed 2048 samples at a time from float64 copies of the chunk;
* FISTA: the lifted Z = (P, p, q) (attention p = d^2, q = d c; Mixer p = t^2, q = d c; MLP p = d,
  q = c; circulant FNO p = t, q = d c; spectral FNO P = t/2+1, p = d, q = c, complex) held 7 times
  (iterate, extrapolation, gradient, step, prox, difference, momentum step), plus the largest of
  (i) the prox: a float64 copy, the thresholded result and the output (3 |Z| float64), and the
  Gram / eigenvectors (3 P p'^2, p' = min(p, q)); (ii) a gradient: when the stacked design (n, P m),
  m = p q / c, has at most 2^25 entries it is built once (twice while being concatenated, again in
  float64 for the stopping test), else autograd over one batch: the activations below, twice
  (forward and backward), and the accumulated gradient (2 |Z|); (iii) the certificate: a float64 Z,
  the SVD work of its nuclear norm, the explicit adjoint A*(G) with autograd (Z0, output, gradient)
  and its spectral norm (4 |Z| float64), or, beyond 2^25 entries, block power iteration on the
  factored forward with 8 columns;
* Burer–Monteiro: factors U (P, p, r), V (P, q, r) four times (values, gradients, Adam's moments),
  L-BFGS's 50 pairs of them, a batch's factored activations twice, and the same certificate;
* batch activations of the forward map (entries per batch of b samples): MLP b (d + 2 P c);
  linear attention b (d^2 + d c + t c + t d) + |Z| (a permuted copy of Z); gated attention
  P b t (t + d^2 + d c) + b t c + |Z|; Mixer b t (d + c) + |Z|; gated Mixer P b t (d + t d) + b t c;
  FNO 2 b (t/2+1)(d + c) + 2 (t/2+1) d c + b t c (complex doubled).  Factored (rank r): MLP
  b P r + b c; linear attention b r (t d + d c) + b d^2; gated attention P b r t (t + c); Mixer
  P b r t d + P b t d; FNO forms Z (|Z|) and then its forward;
* predictions of a convex head: the recovered network on the host in float64, in chunks whose
  largest intermediate (scores (b', m, t, t) and products for m recovered units, m at most the
  rank bound P min(p, q)) holds at most 2^22 entries, counted three times, and the logits
  (n + n', c) twice; the solver's work arrays are freed by then, so the peak is the larger of
  the two phases.

On a CPU device, host and device are one memory: a head fits when the sum fits the host.

**Time per iteration** = floating-point operations / an assumed sustained throughput
(:data:`ASSUMED_FLOPS`: 2e10 flop/s on a CPU; on a CUDA device 5e12 in float64, 2e13 in float32,
5e13 in bfloat16; ``--flops`` overrides), counting a multiply-add as 2.  A forward pass over all
samples costs (MLP) 2 n d P c; (linear attention) 2 n (t d^2 + d^3 c + t d c); (gated attention)
2 P n t (t d^2 + d^3 c + d c); (Mixer) 2 n t^2 d c, gated P times that; (FNO) 8 n (t/2+1) d c.
A FISTA iteration is 4 forward passes (gradient = forward + backward, one line-search value) or,
with the stacked design, 3 products with it (6 n P m c), plus the prox (2 P p'^2 q' + 9 P p'^3).
A Burer–Monteiro epoch is 3 factored forward passes (2 n r (t d^2 + d^2 c + t d c) for linear
attention, 2 P n r (t d^2 + t^2 d + t d c + t^2 c) gated, 2 P n r (t^2 d + t d c) for Mixer,
2 n P r (d + c) for the MLP).  Linear heads: an L-BFGS iteration 6 n d c; Adam: an epoch 6 n
(d w + w c) for ``mlp_relu`` (w hidden units), 6 n h (t d^2 + 2 t^2 d + t d c) for softmax
attention (h heads).  The time per beta multiplies by the iterations expected
(:data:`EXPECTED_ITERATIONS`: FISTA 1000, L-BFGS 1000, Adam and Burer–Monteiro their epochs).

**Choosing what fits** (``--reduce-dim auto``, ``--reduce-tokens auto``, ``--method auto``, the
defaults): for each head, the reductions (t, d) of :func:`ladder` from the largest down, and at each
FISTA then Burer–Monteiro (convex heads): the first that fits the host and the device and whose
estimated time per beta is within ``--time-budget`` (default 1 h); when none is within the budget,
the fastest one that fits.  A value given on the command line is kept fixed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: sustained floating-point throughput assumed for the time model (flop/s)
ASSUMED_FLOPS = {"cpu": 2e10, ("cuda", "float64"): 5e12, ("cuda", "float32"): 2e13,
                 ("cuda", "bfloat16"): 5e13}
#: iterations a fit is expected to take (for the time per beta): FISTA and L-BFGS
EXPECTED_ITERATIONS = {"fista": 1000, "lbfgs": 1000}
#: samples per chunk of the masks and device copies (solvers.heads.CHUNK)
CHUNK = 2048
DESIGN_LIMIT = 2**25  # solvers.fista.DESIGN_LIMIT
#: entries of a recovered network's largest intermediate per chunk of samples (float64: 32 MB);
#: ``cifar.heads`` predicts in chunks of this size (it imports it from here)
PREDICT_ENTRIES = 2**22
EXPLICIT_LIMIT = 2**25  # solvers.certify.EXPLICIT_LIMIT
TIME_BUDGET_S = 3600.0
ITEM = {"float64": 8, "float32": 4, "bfloat16": 2}
#: convex heads: name -> (kind, activation, pooled input); as cifar.heads.CONVEX_HEADS (+ fno_token)
CONVEX = {"mlp_gated_relu": ("mlp", "gated_relu", True), "attention_linear": ("attention", "linear", False),
          "attention_gated_relu": ("attention", "gated_relu", False), "mixer": ("mixer", "linear", False),
          "mixer_gated_relu": ("mixer", "gated_relu", False), "fno": ("fno", "circulant", False),
          "fno_spectral": ("fno", "spectral", False), "fno_token": ("fno", "circulant", False)}
OWN = ("linear", "linear_flat", "mlp_relu", "attention_softmax")
GB = 10**9


@dataclass(frozen=True)
class Sizes:
    """The data's sizes: train and test images, tokens, features, classes."""

    n_train: int
    n_test: int
    tokens: int
    features: int
    classes: int


@dataclass
class HeadPlan:
    """One head's plan: its features (tokens x features after reduction), method, peak memory
    (bytes, with the terms), time per iteration and whether it fits."""

    head: str
    method: str
    tokens: int
    features: int
    host: dict
    device: dict
    flops: float
    seconds_per_iter: float
    iter_unit: str
    iterations: int
    host_memory: int
    device_memory: int
    device_type: str
    predict: dict = field(default_factory=dict)  # host arrays after the solve (its work is freed)
    solve_keys: tuple = ()  # device terms that are the solver's work (freed before predicting)
    reduce_dim: int | None = None  # what reduce_features is asked for (None: none)
    reduce_tokens: int | None = None
    rank: int | None = None
    advice: str = ""
    auto: dict = field(default_factory=dict)

    @property
    def host_bytes(self) -> int:
        """Host peak: its arrays plus the larger of the solve and the predictions after it (on a
        CPU device the device's arrays are host memory too)."""
        own = int(sum(self.host.values()))
        after = int(sum(self.predict.values()))
        if self.device_type != "cpu":
            return own + after
        data = sum(v for k, v in self.device.items() if k not in self.solve_keys)
        return own + max(self.device_bytes, int(data) + after)

    @property
    def device_bytes(self) -> int:
        return int(sum(self.device.values()))

    @property
    def fits_host(self) -> bool:
        return self.host_bytes <= self.host_memory

    @property
    def fits_device(self) -> bool:
        return self.device_type == "cpu" or self.device_bytes <= self.device_memory

    @property
    def fits(self) -> bool:
        return self.fits_host and self.fits_device

    @property
    def seconds_per_beta(self) -> float:
        return self.seconds_per_iter * self.iterations

    def options(self) -> str:
        """The command-line options that give this plan's features and method."""
        out = [f"--reduce-tokens {self.reduce_tokens}" if self.reduce_tokens else "",
               f"--reduce-dim {self.reduce_dim}" if self.reduce_dim else ""]
        if self.head in CONVEX:
            out.append(f"--method {self.method}")
            if self.method == "burer_monteiro" and self.rank is not None:
                out.append(f"--solver-option rank={self.rank}")
        return " ".join(o for o in out if o) or "(as given)"


def throughput(device_type: str, dtype: str = "float64", flops: float | None = None) -> float:
    """The assumed flop/s (:data:`ASSUMED_FLOPS`) unless ``flops`` is given."""
    if flops is not None:
        return float(flops)
    if device_type == "cpu":
        return ASSUMED_FLOPS["cpu"]
    return ASSUMED_FLOPS[("cuda", dtype)]


def _lifted(kind: str, act: str, t: int, d: int, c: int, P: int) -> tuple[int, int, int, bool]:
    """(P, p, q, complex) of Z."""
    if kind == "mlp":
        return P, d, c, False
    if kind == "attention":
        return (1 if act == "linear" else P), d * d, d * c, False
    if kind == "mixer":
        return (1 if act == "linear" else P), t * t, d * c, False
    if act == "circulant":
        return 1, t, d * c, False
    return t // 2 + 1, d, c, True


def _act(kind, act, t, d, c, P, b, Z) -> float:
    """Entries of one batch's forward activations (module docstring)."""
    if kind == "mlp":
        return b * (d + 2 * P * c)
    if kind == "attention":
        if act == "linear":
            return b * (d * d + d * c + t * c + t * d) + Z
        return P * b * t * (t + d * d + d * c) + b * t * c + Z
    if kind == "mixer":
        if act == "linear":
            return b * t * (d + c) + Z
        return P * b * t * (d + t * d) + b * t * c
    K = t // 2 + 1
    return 2 * b * K * (d + c) + 2 * K * d * c + b * t * c


def _act_factored(kind, act, t, d, c, P, b, r, Z) -> float:
    if kind == "mlp":
        return b * P * r + b * c
    if kind == "attention":
        if act == "linear":
            return b * r * (t * d + d * c) + b * d * d
        return P * b * r * t * (t + c)
    if kind == "mixer":
        return P * b * r * t * d + (0 if act == "linear" else P * b * t * d)
    return Z + _act(kind, act, t, d, c, P, b, Z)


def _forward_flops(kind, act, n, t, d, c, P) -> float:
    if kind == "mlp":
        return 2.0 * n * d * P * c
    if kind == "attention":
        if act == "linear":
            return 2.0 * n * (t * d * d + d ** 3 * c + t * d * c)
        return 2.0 * P * n * t * (t * d * d + d ** 3 * c + d * c)
    if kind == "mixer":
        return 2.0 * n * t * t * d * c * (1 if act == "linear" else P)
    return 8.0 * n * (t // 2 + 1) * d * c


def _factored_flops(kind, act, n, t, d, c, P, r, Z) -> float:
    if kind == "mlp":
        return 2.0 * n * P * r * (d + c)
    if kind == "attention":
        if act == "linear":
            return 2.0 * n * r * (t * d * d + d * d * c + t * d * c)
        return 2.0 * P * n * r * (t * d * d + t * t * d + t * d * c + t * t * c)
    if kind == "mixer":
        return 2.0 * P * n * r * (t * t * d + t * d * c)
    return 2.0 * Z * r + _forward_flops(kind, act, n, t, d, c, P)


def _features_host(sz: Sizes, t: int, d: int, reduced: bool) -> dict:
    if not reduced:
        return {"features: fp16 cache, memory-mapped (file pages, not counted)": 0}
    out = {f"reduced features float32, train ({sz.n_train}, {t}, {d}) twice while joined, test":
           4 * (2 * sz.n_train + sz.n_test) * t * d}
    if t != sz.tokens and d != sz.features:  # pooled tokens first (all features), then the PCA
        out[f"token-pooled features before the PCA ({sz.n_train + sz.n_test}, {t}, {sz.features})"] = \
            4 * (sz.n_train + sz.n_test) * t * sz.features
    return out


def head_plan(head: str, sizes: Sizes, tokens: int, features: int, method: str = "fista",
              dtype: str = "float64", batch_size: int = 256, rank: int | None = None,
              n_gates: int | None = None, device_type: str = "cuda", host_memory: int = 128 * GB,
              device_memory: int = 80 * GB, flops: float | None = None, width: int = 512,
              attn_heads: int = 4, epochs: int = 10, bm_epochs: int = 300,
              reduced: bool | None = None) -> HeadPlan:
    """The memory and time of ``head`` on ``tokens`` x ``features`` (module docstring)."""
    n, nt, c = sizes.n_train, sizes.n_test, sizes.classes
    t, d, b = tokens, features, min(batch_size, n)
    if reduced is None:
        reduced = (t, d) != (sizes.tokens, sizes.features)
    host = dict(_features_host(sizes, t, d, reduced))
    dev: dict = {}
    cpu = device_type == "cpu"
    speed = throughput(device_type, "float64" if head in ("linear", "linear_flat") else
                       ("float32" if head not in CONVEX else dtype), flops)
    if head in ("linear", "linear_flat"):
        f = d * (t if head == "linear_flat" else 1)
        host["pooled train features float32, chunks + joined, and test"] = 4 * (2 * n + nt) * f
        host["certificate: probabilities, one-hot, their difference (n, c) float64"] = 3 * 8 * n * c
        if not cpu:
            host["train features back on the host for the certificate, float64"] = 8 * n * f
        dev["pooled features float64, train and test"] = 8 * (n + nt) * f
        dev["logits, softmax, gradients (n, c) float64, 4x; test logits"] = 8 * (4 * n + nt) * c
        dev["L-BFGS: weights, gradient, 50 pairs of (f, c)"] = 8 * 102 * f * c
        fl, unit, iters = 6.0 * n * f * c, "L-BFGS iteration", EXPECTED_ITERATIONS["lbfgs"]
        method = "lbfgs"
    elif head == "mlp_relu":
        host["pooled features float32, chunks + joined, and test"] = 4 * (2 * n + nt) * d
        dev["pooled features float32, train and test"] = 4 * (n + nt) * d
        dev["parameters x4 (values, gradients, Adam moments)"] = 16 * (d * width + width * c)
        dev["batch activations, logits (train and test)"] = 4 * (3 * b * (width + c) + 8192 * (width + c)
                                                                  + (n + nt) * c)
        fl, unit, iters = 6.0 * n * (d * width + width * c), "Adam epoch", epochs
        method = "adam"
    elif head == "attention_softmax":
        h = attn_heads
        dev["tokens fp16, train and test"] = 2 * (n + nt) * t * d
        dev["parameters x4"] = 16 * h * (d * d + d * c)
        e = max(b, 256)
        dev["batch activations: scores (b, heads, t, t) x3, tokens, outputs"] = \
            4 * (3 * e * h * t * t + 2 * e * t * d + 2 * e * t * c) + 4 * (n + nt) * c
        host["one chunk of tokens on its way to the device"] = 2 * 4096 * t * d
        fl, unit, iters = 6.0 * n * h * (t * d * d + 2 * t * t * d + t * d * c), "Adam epoch", epochs
        method = "adam"
    elif head in CONVEX:
        kind, act, pool = CONVEX[head]
        w = ITEM[dtype]
        P = 1 if act in ("linear", "circulant", "spectral") else (n_gates or (32 if kind == "mlp" else 8))
        Pz, p, q, cplx = _lifted(kind, act, t, d, c, P)
        Z = Pz * p * q
        zw = w * (2 if cplx else 1)
        z8 = 8 * (2 if cplx else 1)
        pp = min(p, q)
        m_in = d if pool else t * d
        if pool:
            host["pooled features float32, chunks + joined, and test"] = 4 * (2 * n + nt) * d
            host["pooled features as float64 in the solver, and patterns"] = 8 * n * d + n * P
        else:
            host["one chunk as float64 on its way to the device"] = 8 * CHUNK * t * d
        dev[f"features (n, {m_in}) in {dtype}" + (" and again in float64" if w != 8 else "")] = \
            n * m_in * (w + (8 if w != 8 else 0))
        if kind == "mlp":
            dev["patterns (n, P), both dtypes"] = n * P * (w + (8 if w != 8 else 0))
        if act == "gated_relu" and kind in ("attention", "mixer"):
            last = t if kind == "attention" else d
            dev[f"gate masks (P, n, t, {'t' if kind == 'attention' else 'd'}) bool"] = P * n * t * last
            host["masks of one chunk in float64"] = 8 * P * CHUNK * t * last
        dev["labels int64"] = 8 * n
        design = not cplx and n * Pz * (p * q // c) <= DESIGN_LIMIT
        explicit = Z <= EXPLICIT_LIMIT or cplx
        if explicit:
            cert = 4 * Z * z8 + 2 * 8 * _act(kind, act, t, d, c, P, b, Z)
        else:
            cert = 2 * 8 * _act_factored(kind, act, t, d, c, P, b, 8, Z)
        cert += (Z * z8 if w != 8 else 0) + Z * z8 + 8 * n * c * 3
        fwd = _forward_flops(kind, act, n, t, d, c, P)
        if method == "fista":
            dev[f"lifted Z ({Pz}, {p}, {q}) x7 in {dtype}"] = 7 * Z * zw
            prox = 3 * Z * z8 + 3 * 8 * Pz * pp * pp
            if design:
                entries = n * Pz * (p * q // c)
                # built in batches of b: FNO's token-level design (b, t, t d) before pooling, gathered
                # and reshaped; the others build the pooled (P, b, m) directly
                per_batch = 2 * b * t * t * d if kind == "fno" else 2 * b * Pz * (p * q // c)
                grad = max(2 * entries * w + per_batch * w,
                           entries * w + (entries * 8 if w != 8 else 0) + 2 * Z * 8 + 3 * n * c * w)
                fl = 6.0 * entries * c
            else:
                grad = 2 * w * _act(kind, act, t, d, c, P, b, Z) + 2 * Z * zw
                fl = 4.0 * fwd
            parts = {"the prox (float64 copy, result, Gram)": prox,
                     ("the stacked design" if design else "a batch's activations and the gradient"): grad,
                     "the float64 certificate": cert}
            worst = max(parts, key=parts.get)
            dev[f"largest of prox / gradient / certificate: {worst}"] = parts[worst]
            fl += 2.0 * Pz * pp * pp * max(p, q) + 9.0 * Pz * pp ** 3
            unit, iters = "FISTA iteration", EXPECTED_ITERATIONS["fista"]
            rank = None
        else:
            r = rank or min(p, q, 64)
            rank = r
            fac = Pz * (p + q) * r * (2 if cplx else 1)
            dev[f"factors U, V (rank {r}) x4 and L-BFGS's 50 pairs"] = 104 * fac * w
            acts = 2 * w * _act_factored(kind, act, t, d, c, P, b, r, Z)
            dev["largest of a batch's activations / the certificate"] = max(acts, cert)
            fl = 3.0 * _factored_flops(kind, act, n, t, d, c, P, r, Z)
            unit, iters = "Burer-Monteiro epoch", bm_epochs
        predict = {"train and test logits float64, twice": 8 * 2 * (n + nt) * c}
        if not pool:  # the recovered network on the host: chunks of <= PREDICT_ENTRIES per intermediate
            m = Pz * min(p, q)  # units: at most the rank
            predict["recovered network on one chunk of samples (3 intermediates)"] = \
                8 * 3 * min(PREDICT_ENTRIES, b * m * t * (t + d + c))
        solve_keys = tuple(k for k in dev if k.startswith(("lifted Z", "largest of", "factors")))
    else:
        raise ValueError(f"no memory model for head {head!r}; known: {', '.join(OWN + tuple(CONVEX))}")
    if head not in CONVEX:
        predict, solve_keys = {}, ()
    return HeadPlan(head=head, predict=predict, solve_keys=solve_keys,
                    method=method, tokens=t, features=d, host=host, device=dev, flops=fl,
                    seconds_per_iter=fl / speed, iter_unit=unit, iterations=int(iters),
                    host_memory=int(host_memory), device_memory=int(device_memory),
                    device_type="cpu" if cpu else "cuda", rank=rank,
                    reduce_dim=d if d != sizes.features else None,
                    reduce_tokens=t if t != sizes.tokens else None)


def ladder(sizes: Sizes, tokens=None, features=None) -> list[tuple[int, int]]:
    """Candidate (tokens, features), largest first (by t d, then d): the data's own, then tokens
    49, 16, 4 and features 128, 64, 32, 16, 8 below the data's; a given value stays fixed."""
    ts = [tokens] if tokens else [sizes.tokens] + [x for x in (49, 16, 4) if x < sizes.tokens]
    ds = [features] if features else \
        [sizes.features] + [x for x in (128, 64, 32, 16, 8) if x < sizes.features]
    return sorted({(t, d) for t in ts for d in ds}, key=lambda td: (-td[0] * td[1], -td[1]))


def plan_head(head: str, sizes: Sizes, reduce_dim=None, reduce_tokens=None, method: str = "auto",
              time_budget: float = TIME_BUDGET_S, **kw) -> HeadPlan:
    """The plan of ``head``: with the given reduction and method, or (``'auto'`` / None for a
    reduction) the first candidate of :func:`ladder` that fits within ``time_budget`` seconds per
    beta (module docstring).  A plan that does not fit carries ``advice``: the options of the
    automatic choice (or a sentence saying that nothing fits)."""
    auto_dim, auto_tok = reduce_dim in (None, "auto"), reduce_tokens in (None, "auto")
    methods = ("fista", "burer_monteiro") if method == "auto" else (method,)
    if head not in CONVEX:
        methods = ("fista",)  # ignored by the non-convex and linear heads
    fixed_t = None if auto_tok else (sizes.tokens if reduce_tokens == "none" else int(reduce_tokens))
    fixed_d = None if auto_dim else (sizes.features if reduce_dim == "none" else int(reduce_dim))
    cands = [head_plan(head, sizes, t, d, m, **kw)
             for t, d in ladder(sizes, fixed_t, fixed_d) for m in methods]
    chosen = _choose(cands, time_budget)
    if chosen.fits:
        return chosen
    # nothing fits with what was given: what would (every reduction and method free)
    free = [head_plan(head, sizes, t, d, m, **kw) for t, d in ladder(sizes)
            for m in (("fista", "burer_monteiro") if head in CONVEX else ("fista",))]
    best = _choose(free, time_budget)
    chosen.advice = (best.options() if best.fits else
                     "nothing fits: use fewer images (--subset) or a machine with more memory")
    return chosen


def _choose(cands: list, time_budget: float) -> HeadPlan:
    ok = [p for p in cands if p.fits]
    quick = [p for p in ok if p.seconds_per_beta <= time_budget]
    if quick:
        return quick[0]
    if ok:
        return min(ok, key=lambda p: p.seconds_per_beta)
    return cands[0]


def gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 36000:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def format_plan(plans: list, sizes: Sizes, device: str, dtype: str = "float64", flops=None,
                time_budget: float = TIME_BUDGET_S) -> str:
    """The plan as a table: head x (features, method, host peak, device peak, fits?, s/iter,
    time per beta, what makes it fit)."""
    p0 = plans[0] if plans else None
    dev_mem = "shared with the host" if device == "cpu" else gb(p0.device_memory) if p0 else "?"
    lines = [f"plan: {sizes.n_train} train / {sizes.n_test} test images, {sizes.tokens} tokens x "
             f"{sizes.features} features, {sizes.classes} classes; device {device} ({dev_mem}), host "
             f"{gb(p0.host_memory) if p0 else '?'}; solver dtype {dtype}; throughput assumed "
             + ("cpu " + f"{throughput('cpu', dtype, flops):.0e}" if device == "cpu" else
                f"{throughput('cuda', dtype, flops):.0e} flop/s ({dtype}), "
                f"{throughput('cuda', 'float32', flops):.0e} for the Adam heads")
             + f"; time budget {_duration(time_budget)} per beta"]
    head = (f"{'head':22s} {'t x d':>9s} {'method':15s} {'host peak':>10s} {'device peak':>11s} "
            f"{'fits?':5s} {'s/iter':>8s} {'per beta':>9s}  what makes it fit")
    lines += [head, "-" * len(head)]
    for p in plans:
        fits = "yes" if p.fits else "NO"
        dev = "(host)" if p.device_type == "cpu" else gb(p.device_bytes)
        changed = p.reduce_dim or p.reduce_tokens or p.method == "burer_monteiro"
        what = p.advice if not p.fits else (p.options() if changed else "no reduction needed")
        lines.append(f"{p.head:22s} {f'{p.tokens}x{p.features}':>9s} {p.method:15s} {gb(p.host_bytes):>10s} "
                     f"{dev:>11s} {fits:5s} {p.seconds_per_iter:8.2g} {_duration(p.seconds_per_beta):>9s}  "
                     f"{what}")
    lines.append("t x d: tokens x features each head trains on (reductions: token pooling, then PCA fit "
                 "on train); s/iter: per FISTA / L-BFGS iteration, Adam / Burer-Monteiro epoch; per "
                 "beta: expected iterations (FISTA, L-BFGS 1000) times s/iter")
    return "\n".join(lines)


def available_host_memory() -> int:
    """Bytes of memory available now (/proc/meminfo's MemAvailable, else the machine's total)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 2**62
