r"""The non-convex token-mixing heads whose convex programs (derived in this collection) live in
:mod:`cvxattn_lib.convex.mixer` and :mod:`cvxattn_lib.convex.fno`.

* :class:`MixerHead`, bilinear token-and-channel mixing (the linear-activation form of a
  Mixer-style block): :math:`f(X)=\sum_jA_jXB_j` (linear) or
  :math:`\sum_j(1\{G_jX\ge0\}\odot A_jX)B_j` (gated ReLU, fixed gates); ``A`` (m, s, s),
  ``B`` (m, d, c), ``G`` (m, s, s).
* :class:`FNOHead`, ``'circulant'``, a shared-kernel circular convolution:
  :math:`f(X)=\sum_j\mathrm{circ}(k_j)XB_j`,
  :math:`\mathrm{circ}(k)[t,u]=k[(t-u)\bmod s]`, computed with FFTs; ``k`` (m, s), ``B`` (m, d, c).
* :class:`FNOHead`, ``'spectral'``, the two-layer per-mode channel map (AFNO-like; the FNO
  layer of Li et al. 2021 has one matrix per mode instead, see
  :func:`cvxattn_lib.convex.fno.fno_layer_ridge`): :math:`f(X)=\mathrm{irfft}_w(\hat X[w]W_{1w}W_{2w})`
  over the K = s//2 + 1 rfft modes, complex ``W1`` (K, d, m), ``W2`` (K, m, c), real at the
  self-conjugate modes (0 and, for even s, s/2).  Stored as real and imaginary parameters, so
  the penalty (half the sum of squares of the parameters) is :math:`\tfrac12\sum_w\|W_{1w}\|_F^2+
  \|W_{2w}\|_F^2` with complex moduli, each rfft mode once.

With ``pool`` the outputs are averaged over tokens (logits for cross-entropy on labels).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..validation import as_float_array, choice, positive_int, positive_scalar, seed_value
from .base import WeightedModel
from .training import TrainRun, evaluate, train_restarts

MIXER_KINDS = ("linear", "gated_relu")
FNO_MIXINGS = ("circulant", "spectral")


def self_conjugate(s: int) -> np.ndarray:
    """(K,) booleans: the rfft modes equal to their own conjugate (0, and s/2 for even s)."""
    w = np.arange(s // 2 + 1)
    return (w == 0) | (2 * w == s)


class MixerHead(WeightedModel):
    """m heads of bilinear token-and-channel mixing (Mixer-style) on s tokens (float64 by
    default for exact comparisons)."""

    PARAMS = ("A", "B")

    def __init__(self, s: int, d: int, m: int, c: int, activation: str = "linear", gates=None,
                 pool: bool = False, init_scale: float = 1.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.activation = choice("activation", activation, MIXER_KINDS)
        self.pool = pool
        self.A = nn.Parameter(torch.randn(m, s, s, generator=generator, dtype=dtype)
                              * init_scale / np.sqrt(s))
        self.B = nn.Parameter(torch.randn(m, d, c, generator=generator, dtype=dtype)
                              * init_scale / np.sqrt(d))
        self.set_gates(activation, gates, (m, s, s), dtype)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        AX = torch.einsum("mtu,nua->nmta", self.A, X)
        if self.G is not None:
            AX = AX * (torch.einsum("mtu,nua->nmta", self.G, X) >= 0).to(AX.dtype)
        out = torch.einsum("nmta,mac->ntc", AX, self.B)
        return out.mean(dim=1) if self.pool else out

    @classmethod
    def from_weights(cls, weights: dict, activation: str, pool: bool = False,
                     dtype: torch.dtype = torch.float64) -> "MixerHead":
        """The heads with exactly these weights (``A`` (m, s, s), ``B`` (m, d, c), ``G``)."""
        A = as_float_array("weights['A']", weights["A"], 3)
        m, s, _ = A.shape
        B = as_float_array("weights['B']", weights["B"], 3, shape=(m, None, None))
        net = cls(s, B.shape[1], m, B.shape[2], activation, gates=weights.get("G"), pool=pool,
                  dtype=dtype)
        return net.load(A, B)


class FNOHead(WeightedModel):
    """A factored Fourier token-mixing head: ``'circulant'``, a circular convolution with m shared
    kernels, or ``'spectral'``, the two-layer per-mode channel map (AFNO-like) with m hidden
    channels per rfft mode."""

    def __init__(self, s: int, d: int, m: int, c: int, mixing: str = "circulant",
                 pool: bool = False, init_scale: float = 1.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.mixing = choice("mixing", mixing, FNO_MIXINGS)
        self.pool, self.s, self.G = pool, s, None
        if mixing == "circulant":
            self.PARAMS = ("k", "B")
            self.k = nn.Parameter(torch.randn(m, s, generator=generator, dtype=dtype)
                                  * init_scale / np.sqrt(s))
            self.B = nn.Parameter(torch.randn(m, d, c, generator=generator, dtype=dtype)
                                  * init_scale / np.sqrt(d))
            return
        self.PARAMS = ("W1", "W2")
        K = s // 2 + 1
        paired = torch.as_tensor(~self_conjugate(s), dtype=dtype)
        self.register_buffer("paired", paired)
        scale1, scale2 = init_scale / np.sqrt(2 * d), init_scale / np.sqrt(2 * m)
        for name, shape, scale in (("W1", (K, d, m), scale1), ("W2", (K, m, c), scale2)):
            re = torch.randn(*shape, generator=generator, dtype=dtype) * scale
            im = torch.randn(*shape, generator=generator, dtype=dtype) * scale
            setattr(self, name + "_re", nn.Parameter(re))
            # zero (and masked) at the self-conjugate modes: gradient and penalty keep it zero
            setattr(self, name + "_im", nn.Parameter(im * paired[:, None, None]))

    def _complex(self, name: str) -> torch.Tensor:
        im = getattr(self, name + "_im") * self.paired[:, None, None]
        return torch.complex(getattr(self, name + "_re"), im)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Xh = torch.fft.rfft(X, dim=1)  # (n, K, d)
        if self.mixing == "circulant":
            kh = torch.fft.rfft(self.k, dim=1)  # (m, K)
            Oh = torch.einsum("mw,nwa,mac->nwc", kh, Xh, self.B.to(kh.dtype))
        else:
            Oh = torch.einsum("nwa,wam,wmc->nwc", Xh, self._complex("W1"), self._complex("W2"))
        out = torch.fft.irfft(Oh, n=self.s, dim=1)
        return out.mean(dim=1) if self.pool else out

    def weights(self) -> dict[str, np.ndarray]:
        """``k`` (m, s), ``B`` (m, d, c) (circulant) or complex ``W1`` (K, d, m), ``W2``
        (K, m, c) (spectral)."""
        if self.mixing == "circulant":
            return super().weights()
        return {k: self._complex(k).detach().cpu().numpy().astype(np.complex128)
                for k in ("W1", "W2")}

    def load(self, *arrays: np.ndarray):
        """Copy ``k``, ``B`` (circulant) or complex ``W1``, ``W2`` (spectral) in; returns self."""
        if self.mixing == "circulant":
            return super().load(*arrays)
        with torch.no_grad():
            for name, a in zip(("W1", "W2"), arrays, strict=True):
                a = np.asarray(a)
                getattr(self, name + "_re").copy_(torch.as_tensor(a.real.copy()))
                getattr(self, name + "_im").copy_(torch.as_tensor(np.imag(a).copy()))
        return self

    @classmethod
    def from_weights(cls, weights: dict, mixing: str, pool: bool = False,
                     dtype: torch.dtype = torch.float64) -> "FNOHead":
        """The head with exactly these weights (see :meth:`weights`); spectral weights may carry
        ``'s'``, the number of tokens (default 2 (K - 1): K modes do not tell odd s apart)."""
        choice("mixing", mixing, FNO_MIXINGS)
        if mixing == "circulant":
            k = as_float_array("weights['k']", weights["k"], 2)
            m, s = k.shape
            B = as_float_array("weights['B']", weights["B"], 3, shape=(m, None, None))
            return cls(s, B.shape[1], m, B.shape[2], mixing, pool=pool, dtype=dtype).load(k, B)
        W1, W2 = np.asarray(weights["W1"]), np.asarray(weights["W2"])
        if W1.ndim != 3 or W2.ndim != 3 or W2.shape[:2] != (W1.shape[0], W1.shape[2]):
            raise ValueError(f"weights['W1'] (K, d, m) and weights['W2'] (K, m, c) do not match: "
                             f"{W1.shape}, {W2.shape}")
        K, d, m = W1.shape
        s = weights.get("s", 2 * (K - 1))
        if s // 2 + 1 != K:
            raise ValueError(f"weights['s']={s} does not give K={K} rfft modes")
        net = cls(s, d, m, W2.shape[2], mixing, pool=pool, dtype=dtype)
        return net.load(W1, W2)


def _token_targets(X, Y, loss):
    from . import _attention_targets  # shared (n, s, d) / (n, s, c) checks

    return _attention_targets(X, Y, loss)


def train_mixer(X, Y, beta, activation: str = "linear", m: int = 4, gates=None,
                restarts: int = 10, seed: int = 0, loss: str = "squared", optimizer="lbfgs",
                max_iter: int = 2000, lr=None, init_scale: float = 1.0, device=None,
                progress: bool = True, polish_iter: int = 500) -> list[TrainRun]:
    """Train :class:`MixerHead` with ``restarts`` initialisations (see ``train_restarts``).

    X (n, s, d); Y (n, s, c) token targets, or labels (n,) with ``loss='cross_entropy'``
    (mean-pooled outputs).  ``gates`` (m, s, s) for ``'gated_relu'`` (m is then its length).
    """
    X, Y, c = _token_targets(X, Y, loss)
    choice("activation", activation, MIXER_KINDS)
    beta = positive_scalar("beta", beta)
    seed = seed_value("seed", seed)
    n, s, d = X.shape
    if gates is not None:
        gates = as_float_array("gates", gates, 3, shape=(None, s, s))
    m = positive_int("m", m) if gates is None else gates.shape[0]

    def make(gen):
        return MixerHead(s, d, m, c, activation, gates=gates, pool=loss == "cross_entropy",
                         init_scale=init_scale, generator=gen)

    return train_restarts(make, X, Y, beta, loss=loss, restarts=restarts, seed=seed,
                          optimizer=optimizer, max_iter=max_iter, lr=lr, device=device,
                          progress=progress, polish_iter=polish_iter)


def train_fno(X, Y, beta, mixing: str = "circulant", m: int = 4, restarts: int = 10,
              seed: int = 0, loss: str = "squared", optimizer="lbfgs", max_iter: int = 2000,
              lr=None, init_scale: float = 1.0, device=None, progress: bool = True,
              polish_iter: int = 500) -> list[TrainRun]:
    """Train :class:`FNOHead` (``m`` kernels, or ``m`` hidden channels per mode) with
    ``restarts`` initialisations; arguments as :func:`train_mixer`."""
    X, Y, c = _token_targets(X, Y, loss)
    choice("mixing", mixing, FNO_MIXINGS)
    beta = positive_scalar("beta", beta)
    seed = seed_value("seed", seed)
    m = positive_int("m", m)
    n, s, d = X.shape

    def make(gen):
        return FNOHead(s, d, m, c, mixing, pool=loss == "cross_entropy", init_scale=init_scale,
                       generator=gen)

    return train_restarts(make, X, Y, beta, loss=loss, restarts=restarts, seed=seed,
                          optimizer=optimizer, max_iter=max_iter, lr=lr, device=device,
                          progress=progress, polish_iter=polish_iter)


def mixer_objective(weights: dict, X, Y, beta, activation: str, loss: str = "squared") -> float:
    """The regularised objective of the Mixer heads with these ``weights`` (float64)."""
    X, Y, _ = _token_targets(X, Y, loss)
    net = MixerHead.from_weights(weights, activation, pool=loss == "cross_entropy")
    return evaluate(net, X, Y, beta, loss)


def fno_objective(weights: dict, X, Y, beta, mixing: str, loss: str = "squared") -> float:
    """The regularised objective of the FNO head with these ``weights`` (float64)."""
    X, Y, _ = _token_targets(X, Y, loss)
    weights = {**weights, "s": X.shape[1]} if mixing == "spectral" else weights
    net = FNOHead.from_weights(weights, mixing, pool=loss == "cross_entropy")
    return evaluate(net, X, Y, beta, loss)
