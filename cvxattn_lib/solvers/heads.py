r"""Convex heads as torch modules, parameterised by their lifted matrices.

Every convex head here is :math:`\min_Z L(\mathcal{A}(Z)) + \beta\sum_j\|Z_j\|_*` with a linear map
:math:`\mathcal{A}` from lifted matrices :math:`Z_j` (one per gate, stacked as ``Z`` of shape
(P, p, q)) to outputs.  A head holds the data (on its device, in its dtype) and provides

* :meth:`ConvexHead.forward` ``(Z, idx)``: :math:`\mathcal{A}(Z)` on the samples ``idx``, in the
  shape the loss wants ((b, c) rows, or (b s, c) token rows), without building a design matrix;
* :meth:`ConvexHead.forward_factored` ``(U, V, idx)``: :math:`\mathcal{A}(UV^\top)` for factors
  U (P, p, r), V (P, q, r), without forming Z (for attention: the ordinary multi-head layer);
* the adjoint :math:`\mathcal{A}^*(V)` by autograd (:meth:`ConvexHead.adjoint`), since
  :math:`\nabla_Z\langle V,\mathcal{A}(Z)\rangle=\mathcal{A}^*(V)`.

Heads are registered by ``kind`` in :data:`HEADS` (:func:`register_head`); :func:`cal.solvers.fit_head`
looks the kind up there, so a new head plugs in by subclassing :class:`ConvexHead` and registering.
Gates and patterns are drawn exactly as the ``cal.convex.fit_*`` functions draw them for the same seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import arrangements
from ..convex.attention import ATTENTION_ACTIVATIONS, attention_gates, attention_masks
from ..losses import torch_loss
from ..validation import as_float_array, choice, positive_int, real_features, targets, token_targets

HEADS: dict[str, type["ConvexHead"]] = {}


def register_head(kind: str):
    """Class decorator: make a :class:`ConvexHead` subclass available as ``fit_head(kind, ...)``."""
    def deco(cls):
        cls.kind = kind
        HEADS[kind] = cls
        return cls
    return deco


class ConvexHead(nn.Module):
    """Base class.  Subclasses set ``shape = (P, p, q)``, ``n`` (samples), ``loss``, ``Yt``
    (targets or labels, torch), ``Y`` (the same in the loss's row shape, float64 numpy) and
    implement :meth:`forward`, :meth:`weights_from_factors` and :meth:`build`."""

    kind = "?"
    ACTIVATIONS: tuple = ()
    DEFAULT_ACTIVATION = ""
    complex = False  # complex lifted matrices (the spectral FNO head)

    def zdtype(self, dtype: torch.dtype | None = None) -> torch.dtype:
        """The dtype of Z for data in ``dtype`` (the head's): its complex counterpart if complex."""
        dtype = dtype or self.Xt.dtype
        if not self.complex:
            return dtype
        return torch.complex128 if dtype == torch.float64 else torch.complex64

    # -- to implement ----------------------------------------------------------------------
    @classmethod
    def build(cls, X, Y, activation, gates, n_gates, seed, loss, device, dtype,
              classes: int | None = None) -> "ConvexHead":
        """The head on data X, targets Y.  ``classes`` (cross-entropy): the data set's class count,
        the number of logits (labels must lie below it; default: the labels' max + 1)."""
        raise NotImplementedError

    def forward(self, Z: torch.Tensor, idx=None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def weights_from_factors(self, A: list, B: list) -> dict:  # pragma: no cover - abstract
        """Non-convex weights from balanced factors ``Z_j = A_j B_j`` (A_j (p, r_j), B_j (r_j, q))."""
        raise NotImplementedError

    def with_dtype(self, dtype: torch.dtype) -> "ConvexHead":  # pragma: no cover - abstract
        """The same head (same data, gates, patterns) in another dtype."""
        raise NotImplementedError

    def design(self, idx=None) -> torch.Tensor:  # pragma: no cover - abstract
        """Design blocks B (P, rows, m) of samples ``idx``: the un-pooled output is
        sum_j B_j @ Z_j.reshape(m, c).  Only for the Gram path of the squared loss."""
        raise NotImplementedError

    def gram(self, batch_size: int | None = None):
        r"""For the squared loss, :math:`H_{jk}=B_j^\top B_k` (P, P, m, m), :math:`B_j^\top Y`
        (P, m, c) and :math:`\|Y\|^2`, accumulated over sample batches (B never held whole), so
        that :math:`f(Z)=\tfrac12\langle Z,HZ\rangle-\langle B^\top Y,Z\rangle+\tfrac12\|Y\|^2`
        costs nothing per sample."""
        H = BtY = None
        yy = 0.0
        for idx in self.batches(batch_size):
            B = self.design(idx)
            Yb = self.targets(idx).to(B.dtype)
            h = torch.einsum("prm,qrk->pqmk", B, B)
            by = torch.einsum("prm,rc->pmc", B, Yb)
            H, BtY = (h, by) if H is None else (H + h, BtY + by)
            yy += float(Yb.square().sum())
        return H, BtY, yy

    # -- shared ----------------------------------------------------------------------------
    @property
    def pools(self) -> bool:
        """Whether :meth:`forward` mean-pools token rows into one row per sample (cross-entropy
        on token heads); the MLP head's rows are its samples already."""
        return False

    def loss_design(self, idx=None) -> torch.Tensor:
        r"""Design blocks (rows, P, m) in the rows of :meth:`forward`: the output is
        :math:`\sum_j B_j\,Z_j.\mathrm{reshape}(m, c)` for token rows, and its token mean
        :math:`\tfrac1s\sum_t` for pooled heads (what :meth:`pooled_design` gives; by default
        the mean of :meth:`design` over the tokens)."""
        B = self.pooled_design(idx) if self.pools else self.design(idx)
        return B.permute(1, 0, 2)

    def readout_weights(self) -> torch.Tensor:
        """(s,) weights w of a pooled head's read-out, logits = sum_t w_t (token t's outputs), read
        off :meth:`_out` itself (1/s each for the mean; a subclass reading token 0 gives e_0)."""
        eye = torch.eye(self.s, dtype=self.Xt.dtype, device=self.Xt.device)
        return self._out(eye[None])[0]

    def pooled_design(self, idx=None) -> torch.Tensor:
        """The read-out of :meth:`design` over the tokens (P, b, m); heads override it to skip the
        token rows."""
        B = self.design(idx)
        B = B.reshape(B.shape[0], -1, self.s, B.shape[-1])
        return torch.einsum("pbsm,s->pbm", B, self.readout_weights().to(B.dtype))

    def design_entries(self) -> int:
        """Entries of the stacked design (rows, P m) that :meth:`stacked_design` would build."""
        P, p, q = self.shape
        rows = self.n * (1 if self.pools or not hasattr(self, "s") else self.s)
        return rows * P * (p * q // self.out_columns())

    def out_columns(self) -> int:
        """Columns c of the outputs (targets, or classes for cross-entropy)."""
        return int(getattr(self, "c", self.shape[2]))

    def stacked_design(self, batch_size: int | None = None, dtype=None) -> torch.Tensor:
        r"""The whole linear map as one matrix (rows, P m), built once in sample batches (the data
        products -- gate masks times tokens, per-token Grams -- are computed here, not per
        iteration): the outputs of :meth:`forward` are ``stacked_design() @ Z.reshape(P m, c)``."""
        parts = [self.loss_design(i).to(dtype or self.Xt.dtype)
                 for i in self.batches(batch_size or 64)]
        B = torch.cat(parts)
        return B.reshape(B.shape[0], -1)

    def forward_factored(self, U: torch.Tensor, V: torch.Tensor, idx=None) -> torch.Tensor:
        r""":math:`\mathcal{A}(UV^\top)`; subclasses override it to avoid forming Z."""
        return self.forward(U @ V.transpose(1, 2), idx)

    def targets(self, idx=None) -> torch.Tensor:
        """The targets of samples ``idx`` in the rows :meth:`forward` returns."""
        Y = self.Yt if idx is None else self.Yt[idx]
        return Y.reshape(-1, Y.shape[-1]) if Y.ndim == 3 else Y

    def loss_of(self, out: torch.Tensor, idx=None) -> torch.Tensor:
        """L on the samples ``idx`` (a sum, the project's convention)."""
        return torch_loss(out, self.targets(idx), self.loss)

    def batches(self, batch_size: int | None):
        """Index ranges covering every sample, ``batch_size`` samples each (all if None)."""
        b = self.n if batch_size is None else min(batch_size, self.n)
        for start in range(0, self.n, b):
            yield slice(start, min(start + b, self.n))

    def adjoint(self, V: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        r""":math:`\mathcal{A}^*(V)` (P, p, q) for V in the rows of :meth:`forward` (all samples)."""
        zd = self.zdtype(V.dtype)
        Z0 = torch.zeros(self.shape, dtype=zd, device=V.device, requires_grad=True)
        out = torch.zeros(self.shape, dtype=zd, device=V.device)
        rows = 0
        for idx in self.batches(batch_size):
            A = self.forward(Z0, idx)
            Vb = V[rows:rows + A.shape[0]]
            rows += A.shape[0]
            (g,) = torch.autograd.grad((A * Vb).sum(), Z0)
            out += g
        return out

    def predict(self, Z: torch.Tensor, batch_size: int | None = None, factors=None) -> torch.Tensor:
        """Outputs on every sample (rows of the loss), from Z or from ``factors=(U, V)``."""
        with torch.no_grad():
            parts = [self.forward(Z, idx) if factors is None else self.forward_factored(*factors, idx)
                     for idx in self.batches(batch_size)]
        return torch.cat(parts)

    def Y_rows(self) -> np.ndarray:
        """Targets in the loss's row shape (float (rows, c), or int labels (n,)) as numpy."""
        Y = self.targets().detach().cpu()
        return Y.numpy() if self.loss == "cross_entropy" else Y.double().numpy()


#: samples per chunk when token data are copied to the device or masks are computed (bounded host memory)
CHUNK = 2048


def token_features(X) -> np.ndarray:
    """Tokens (n, s, d) as they are when they are a float16/32/64 numpy array (a memory map stays
    a map: no float64 copy of large features; checked finite ``CHUNK`` rows at a time), else as a
    float64 array (:func:`~cvxattn_lib.validation.as_float_array`)."""
    if isinstance(X, np.ndarray) and X.dtype in (np.float16, np.float32, np.float64):
        real_features("X", X, 3)
        return X
    return as_float_array("X", X, 3)


def device_tensor(X: np.ndarray, dtype, device, chunk: int = CHUNK) -> torch.Tensor:
    """``X`` as a tensor of ``dtype`` on ``device``, copied ``chunk`` samples at a time (never a
    full-size converted copy on the host); a float64 array on the CPU in float64 is shared, not
    copied."""
    device = torch.device(device)
    if device.type == "cpu" and dtype == torch.float64 and type(X) is np.ndarray \
            and X.dtype == np.float64:
        return torch.from_numpy(X)
    out = torch.empty(X.shape, dtype=dtype, device=device)
    for i in range(0, X.shape[0], chunk):
        out[i:i + chunk] = torch.from_numpy(np.asarray(X[i:i + chunk], dtype=np.float64)).to(device, dtype)
    return out


def chunked_masks(fn, X: np.ndarray, gates: np.ndarray, device, chunk: int = CHUNK) -> torch.Tensor:
    """Boolean masks ``fn(X, gates)`` (P, n, ...) on ``device``, computed ``chunk`` samples at a time
    from float64 copies of the chunk (the same values as ``fn`` on all of X at once: each mask entry
    depends on its own sample only), so the float64 intermediates stay chunk-sized."""
    parts = None
    for i in range(0, X.shape[0], chunk):
        m = torch.as_tensor(fn(np.asarray(X[i:i + chunk], dtype=np.float64), gates), device=device)
        if parts is None:
            parts = torch.empty((m.shape[0], X.shape[0], *m.shape[2:]), dtype=torch.bool, device=device)
        parts[:, i:i + chunk] = m
    return parts


def _idx(idx):
    return slice(None) if idx is None else idx


@register_head("mlp")
class MLPHead(ConvexHead):
    r"""Two-layer network, linear or gated ReLU (``cal.convex.fit_mlp``):
    :math:`\mathcal{A}(Z)=\sum_j D_jXZ_j`, Z (P, d, c), patterns D (n, P) (one all-ones column
    for linear).  Factored: the gated network :math:`\sum_j D_j (XU_j)V_j^\top`."""

    ACTIVATIONS = ("linear", "gated_relu")
    DEFAULT_ACTIVATION = "gated_relu"

    def __init__(self, X: np.ndarray, Y: np.ndarray, D: np.ndarray, G: np.ndarray, activation: str,
                 loss: str, c: int, device, dtype):
        super().__init__()
        self.activation, self.loss = activation, loss
        self._np = (X, Y, D, G, c)
        self.n, d = X.shape
        self.shape = (D.shape[1], d, c)
        self.G = G
        self.Xt = torch.as_tensor(X, dtype=dtype, device=device)
        self.Dt = torch.as_tensor(D, dtype=dtype, device=device)
        ydtype = torch.int64 if loss == "cross_entropy" else dtype
        self.Yt = torch.as_tensor(Y, dtype=ydtype, device=device)

    @classmethod
    def build(cls, X, Y, activation, gates, n_gates, seed, loss, device, dtype, classes=None):
        X = as_float_array("X", X, 2)
        activation = choice("activation", activation, cls.ACTIVATIONS + ("relu",))
        if activation == "relu":
            raise ValueError("activation='relu' is a group-norm program with cone constraints, not a "
                             "nuclear-norm head; use activation='gated_relu' here, or "
                             "cal.convex.fit_mlp(..., activation='relu') for small problems")
        Y, c = targets(Y, X.shape[0], loss, classes=classes)
        n, d = X.shape
        if activation == "linear":
            D, G = np.ones((n, 1), dtype=bool), np.zeros((d, 0))
        else:  # exactly as cal.convex.mlp: gates, else n_gates, else 32 gates, sampled with seed
            if gates is not None:
                gates = as_float_array("gates", gates, 2, shape=(d, None))
                if gates.shape[1] == 0:
                    raise ValueError(f"gates must have at least one column, got shape {gates.shape}")
            else:
                k = 32 if n_gates is None else positive_int("n_gates", n_gates)
                gates = arrangements.sample_gates(d, k, seed)
            D, G = arrangements.patterns_from_gates(X, gates)
            if D.shape[1] == 0:
                raise ValueError("the gates give no active pattern on X; pass other gates or more "
                                 "n_gates")
        return cls(X, Y, D, G, activation, loss, c, device, dtype)

    def with_dtype(self, dtype):
        X, Y, D, G, c = self._np
        return type(self)(X, Y, D, G, self.activation, self.loss, c, self.Xt.device, dtype)

    def forward(self, Z, idx=None):
        i = _idx(idx)
        P, d, c = self.shape
        XZ = (self.Xt[i].to(Z.dtype) @ Z.permute(1, 0, 2).reshape(d, P * c)).reshape(-1, P, c)
        return (XZ * self.Dt[i, :, None].to(Z.dtype)).sum(dim=1)

    def design(self, idx=None):
        i = _idx(idx)
        return self.Dt[i].T[:, :, None] * self.Xt[i][None]

    def forward_factored(self, U, V, idx=None):
        i = _idx(idx)
        H = torch.einsum("nd,pdr->npr", self.Xt[i].to(U.dtype), U) * self.Dt[i, :, None].to(U.dtype)
        return torch.einsum("npr,pcr->nc", H, V)

    def weights_from_factors(self, A, B):
        d, c = self.shape[1:]
        out = {"W1": np.concatenate(A, axis=1) if A else np.zeros((d, 0)),
               "W2": np.concatenate(B, axis=0) if B else np.zeros((0, c))}
        if self.activation == "gated_relu":
            out["G"] = np.concatenate([np.repeat(self.G[:, [j]], a.shape[1], axis=1)
                                       for j, a in enumerate(A)], axis=1)
        return out


@register_head("self_attention")
class AttentionHead(ConvexHead):
    r"""Self-attention, linear or gated ReLU (``cal.convex.fit_self_attention``): Z (P, d^2, d c),
    token t of sample i gets :math:`\sum_{a,k,l}X_i[t,a]\,\Gamma_{it}[k,l]\,Z[ad+k,\,lc+b]`, with
    :math:`\Gamma_{it}=\sum_u M_i[t,u]x_{iu}x_{iu}^\top` (M all ones for linear: one Gram per sample).
    Computed as (Gram rows) @ Z permuted to (d^2, d c), never building B (n s, d^3).
    Outputs: token rows (b s, c) for the squared loss, mean-pooled logits (b, c) for cross-entropy.
    Factored: the multi-head layer :math:`\sum_h M\odot(XW_{1h}X^\top)XW_{2h}` with
    :math:`W_{1h}=U[:,h]` reshaped (d, d), :math:`W_{2h}=V[:,h]` reshaped (d, c)."""

    ACTIVATIONS = ATTENTION_ACTIVATIONS
    DEFAULT_ACTIVATION = "linear"

    def __init__(self, X, Y, gates, activation, loss, c, device, dtype, masks=None):
        super().__init__()
        self.activation, self.loss = activation, loss
        self._np = (X, Y, gates, c)
        self.n, self.s, self.d = X.shape
        d = self.d
        self.c = c
        self.G = gates
        P = 1 if activation == "linear" else gates.shape[0]
        self.shape = (P, d * d, d * c)
        self.Xt = device_tensor(X, dtype, device)
        # masks from float64 numpy exactly as cal.convex.attention (chunk by chunk), kept as
        # booleans (P, n, s, s); shared with the same head in another dtype (with_dtype)
        self.Mt = (None if activation == "linear" else masks if masks is not None
                   else chunked_masks(attention_masks, X, gates, device))
        ydtype = torch.int64 if loss == "cross_entropy" else dtype
        self.Yt = torch.as_tensor(Y, dtype=ydtype, device=device)

    @classmethod
    def build(cls, X, Y, activation, gates, n_gates, seed, loss, device, dtype, classes=None):
        X = token_features(X)
        n, s, d = X.shape
        activation = choice("activation", activation, cls.ACTIVATIONS)
        Y, c = token_targets(Y, n, s, loss, classes=classes)
        G = np.zeros((0, d, d)) if activation == "linear" else attention_gates(d, gates, n_gates, seed)
        return cls(X, Y, G, activation, loss, c, device, dtype)

    def with_dtype(self, dtype):
        X, Y, G, c = self._np
        return type(self)(X, Y, G, self.activation, self.loss, c, self.Xt.device, dtype, masks=self.Mt)

    def _out(self, out):
        return out.mean(dim=1) if self.loss == "cross_entropy" else out.reshape(-1, self.c)

    @property
    def pools(self):
        return self.loss == "cross_entropy"

    def pooled_design(self, idx=None):
        r"""(P, b, d^3): :math:`\sum_t w_t X[t,a]\,\Gamma_t[k,l]` at column (a, k, l), w the
        read-out weights (1/s: the token mean)."""
        i = _idx(idx)
        X = self.Xt[i]
        d = self.d
        w = self.readout_weights().to(X.dtype)
        if self.Mt is None:
            gram = torch.einsum("nuk,nul->nkl", X, X)
            out = torch.einsum("na,nkl->nakl", torch.einsum("nta,t->na", X, w), gram)[None]
        else:
            gam = torch.einsum("pntu,nuk,nul->pntkl", self.Mt[:, i].to(X.dtype), X, X)
            out = torch.einsum("nta,pntkl,t->pnakl", X, gam, w)
        return out.reshape(out.shape[0], X.shape[0], d**3)

    def forward(self, Z, idx=None):
        i = _idx(idx)
        X = self.Xt[i].to(Z.dtype)
        P, d, c = self.shape[0], self.d, self.c
        # Zp[p, (k, l), (a, b)] = Z[p, a d + k, l c + b]
        Zp = Z.reshape(P, d, d, d, c).permute(0, 2, 3, 1, 4).reshape(P, d * d, d * c)
        if self.Mt is None:
            gram = torch.einsum("nuk,nul->nkl", X, X).reshape(-1, d * d)
            R = (gram @ Zp[0]).reshape(-1, d, c)  # (b, a, c)
            out = torch.einsum("nta,nab->ntb", X, R)
        else:
            M = self.Mt[:, i].to(Z.dtype)
            gam = torch.einsum("pntu,nuk,nul->pntkl", M, X, X).reshape(P, -1, d * d)
            R = torch.bmm(gam, Zp).reshape(P, X.shape[0], self.s, d, c)
            out = torch.einsum("nta,pntab->ntb", X, R)
        return self._out(out)

    def design(self, idx=None):
        i = _idx(idx)
        X = self.Xt[i]
        d = self.d
        if self.Mt is None:
            gram = torch.einsum("nuk,nul->nkl", X, X)
            return torch.einsum("nta,nkl->ntakl", X, gram).reshape(1, -1, d**3)
        gam = torch.einsum("pntu,nuk,nul->pntkl", self.Mt[:, i].to(X.dtype), X, X)
        return torch.einsum("nta,pntkl->pntakl", X, gam).reshape(self.shape[0], -1, d**3)

    def forward_factored(self, U, V, idx=None):
        i = _idx(idx)
        X = self.Xt[i].to(U.dtype)
        P, d, c = self.shape[0], self.d, self.c
        W1 = U.permute(0, 2, 1).reshape(P, -1, d, d)  # (P, r, d, d)
        W2 = V.permute(0, 2, 1).reshape(P, -1, d, c)  # (P, r, d, c)
        if self.Mt is None:  # X W1 (X^T X) W2, one Gram per sample
            gram = torch.einsum("nuk,nul->nkl", X, X)
            XW1 = torch.einsum("nta,rak->nrtk", X, W1[0])
            GW2 = torch.einsum("nkl,rlc->nrkc", gram, W2[0])
            out = torch.einsum("nrtk,nrkc->ntc", XW1, GW2)
        else:
            S = torch.einsum("nta,prak,nuk->pnrtu", X, W1, X) * self.Mt[:, i, None].to(U.dtype)
            XW2 = torch.einsum("nul,prlc->pnruc", X, W2)
            out = torch.einsum("pnrtu,pnruc->ntc", S, XW2)
        return self._out(out)

    def weights_from_factors(self, A, B):
        d, c = self.d, self.c
        W1 = [a.T.reshape(-1, d, d) for a in A]
        W2 = [b.reshape(-1, d, c) for b in B]
        out = {"W1": np.concatenate(W1) if W1 else np.zeros((0, d, d)),
               "W2": np.concatenate(W2) if W2 else np.zeros((0, d, c))}
        if self.activation == "gated_relu":
            out["G"] = np.concatenate([np.repeat(self.G[[j]], a.shape[1], axis=0)
                                       for j, a in enumerate(A)])
        return out


def _token_Y(X, Y, loss, classes=None):
    """Token targets (n, s, c) for the squared loss, labels (n,) for cross-entropy, and c."""
    return token_targets(Y, X.shape[0], X.shape[1], loss, classes=classes)


class _TokenHead(ConvexHead):
    """Shared by the token-mixing heads: X (n, s, d), token rows or mean-pooled logits."""

    def _setup(self, X, Y, G, activation, loss, c, device, dtype, shape):
        self.activation, self.loss = activation, loss
        self._np = (X, Y, G, c)
        self.n, self.s, self.d = X.shape
        self.c, self.G, self.shape = c, G, shape
        self.Xt = device_tensor(X, dtype, device)
        ydtype = torch.int64 if loss == "cross_entropy" else dtype
        self.Yt = torch.as_tensor(Y, dtype=ydtype, device=device)

    def with_dtype(self, dtype):
        X, Y, G, c = self._np
        masks = getattr(self, "Mt", None)
        extra = {} if masks is None else {"masks": masks}
        return type(self)(X, Y, G, self.activation, self.loss, c, self.Xt.device, dtype, **extra)

    def _out(self, out):
        return out.mean(dim=1) if self.loss == "cross_entropy" else out.reshape(-1, self.c)

    @property
    def pools(self):
        return self.loss == "cross_entropy"


@register_head("mixer")
class MixerTorchHead(_TokenHead):
    r"""MLP-Mixer token mixing (``cal.convex.fit_mixer``): Z (P, s^2, d c),
    :math:`f(X)[t,b]=\sum_{u,a}M[t,a]X[u,a]Z[ts+u,ac+b]` (M all ones for linear, else the gate's
    mask :math:`1\{H_jX\ge0\}`).  Factored: :math:`\sum_h(M\odot A_hX)B_h` with
    :math:`A_h=U[:,h]` reshaped (s, s), :math:`B_h=V[:,h]` reshaped (d, c).  Weights ``A``, ``B``, ``G``."""

    ACTIVATIONS = ("linear", "gated_relu")
    DEFAULT_ACTIVATION = "linear"

    def __init__(self, X, Y, gates, activation, loss, c, device, dtype, masks=None):
        super().__init__()
        n, s, d = X.shape
        P = 1 if activation == "linear" else gates.shape[0]
        self._setup(X, Y, gates, activation, loss, c, device, dtype, (P, s * s, d * c))
        from ..convex.mixer import mixer_masks
        self.Mt = (None if activation == "linear" else masks if masks is not None
                   else chunked_masks(mixer_masks, X, gates, device))

    @classmethod
    def build(cls, X, Y, activation, gates, n_gates, seed, loss, device, dtype, classes=None):
        from ..convex.mixer import mixer_gates
        X = token_features(X)
        activation = choice("activation", activation, cls.ACTIVATIONS)
        Y, c = _token_Y(X, Y, loss, classes)
        s, d = X.shape[1:]
        G = np.zeros((0, s, s)) if activation == "linear" else mixer_gates(s, gates, n_gates, seed)
        if G.shape[0] == 0 and activation != "linear":
            raise ValueError("gates must hold at least one (s, s) gate, got shape (0, s, s)")
        return cls(X, Y, G, activation, loss, c, device, dtype)

    def _mask(self, i, dtype, b):
        if self.Mt is None:
            return torch.ones(1, b, self.s, self.d, dtype=dtype, device=self.Xt.device)
        return self.Mt[:, i].to(dtype)

    def forward(self, Z, idx=None):
        i = _idx(idx)
        X = self.Xt[i].to(Z.dtype)
        P, s, d, c = self.shape[0], self.s, self.d, self.c
        Zt = Z.reshape(P, s, s * d, c)  # [p, t, (u, a), b]
        if self.Mt is None:  # one (s d, c) matrix per output token t
            out = torch.einsum("nk,tkb->ntb", X.reshape(X.shape[0], s * d), Zt[0])
        else:
            MX = torch.einsum("pnta,nua->pntua", self.Mt[:, i].to(Z.dtype), X)
            out = torch.einsum("pntk,ptkb->ntb", MX.reshape(P, X.shape[0], s, s * d), Zt)
        return self._out(out)

    def design(self, idx=None):
        i = _idx(idx)
        X = self.Xt[i]
        s = self.s
        M = self._mask(i, X.dtype, X.shape[0])
        eye = torch.eye(s, dtype=X.dtype, device=X.device)
        return torch.einsum("tq,pnta,nua->pntqua", eye, M, X).reshape(self.shape[0], -1, s * s * self.d)

    def pooled_design(self, idx=None):
        r"""(P, b, s^2 d): :math:`w_t M[t,a]X[u,a]` at column (t, u, a), w the read-out weights
        (1/s: the token mean)."""
        i = _idx(idx)
        X = self.Xt[i]
        M = self._mask(i, X.dtype, X.shape[0])
        out = torch.einsum("pnta,nua,t->pntua", M, X, self.readout_weights().to(X.dtype))
        return out.reshape(out.shape[0], X.shape[0], -1)

    def forward_factored(self, U, V, idx=None):
        i = _idx(idx)
        X = self.Xt[i].to(U.dtype)
        P, s, d, c = self.shape[0], self.s, self.d, self.c
        A = U.permute(0, 2, 1).reshape(P, -1, s, s)
        B = V.permute(0, 2, 1).reshape(P, -1, d, c)
        AX = torch.einsum("prtu,nua->pnrta", A, X) * self._mask(i, U.dtype, X.shape[0])[:, :, None]
        return self._out(torch.einsum("pnrta,prab->ntb", AX, B))

    def weights_from_factors(self, A, B):
        s, d, c = self.s, self.d, self.c
        out = {"A": np.concatenate([a.T.reshape(-1, s, s) for a in A]),
               "B": np.concatenate([b.reshape(-1, d, c) for b in B])}
        if self.activation == "gated_relu":
            out["G"] = np.concatenate([np.repeat(self.G[[j]], a.shape[1], axis=0)
                                       for j, a in enumerate(A)])
        return out


@register_head("fno")
class FNOTorchHead(_TokenHead):
    r"""FNO token mixing (``cal.convex.fit_fno``); ``activation`` names the mixing.

    * ``'circulant'``: Z (1, s, d c), :math:`f(X)=\mathrm{irfft}(\hat X\,\mathrm{rfft}(Z))` (one
      nuclear norm; weights ``k`` (m, s), ``B`` (m, d, c));
    * ``'spectral'``: complex Z (K, d, c), the channel map :math:`R_w` of each rfft mode,
      :math:`f(X)=\mathrm{irfft}_w(\hat X[w]R_w)`, regulariser :math:`\beta\sum_w\|R_w\|_*` (each
      rfft mode once; the Parseval multiplicities are in the irfft), real at the self-conjugate
      modes (their imaginary part never reaches the output, so the solvers keep it at zero);
      weights complex ``W1`` (K, d, m), ``W2`` (K, m, c).
    """

    ACTIVATIONS = ("circulant", "spectral")
    DEFAULT_ACTIVATION = "circulant"

    def __init__(self, X, Y, gates, activation, loss, c, device, dtype):
        super().__init__()
        n, s, d = X.shape
        shape = (1, s, d * c) if activation == "circulant" else (s // 2 + 1, d, c)
        self._setup(X, Y, gates, activation, loss, c, device, dtype, shape)
        self.complex = activation == "spectral"

    @classmethod
    def build(cls, X, Y, activation, gates, n_gates, seed, loss, device, dtype, classes=None):
        X = token_features(X)
        activation = choice("activation (the FNO mixing)", activation, cls.ACTIVATIONS)
        if gates is not None or n_gates is not None:
            raise ValueError("FNO heads have no gates; leave gates and n_gates as None")
        Y, c = _token_Y(X, Y, loss, classes)
        return cls(X, Y, None, activation, loss, c, device, dtype)

    def forward(self, Z, idx=None):
        i = _idx(idx)
        real = Z.real.dtype if Z.is_complex() else Z.dtype
        Xh = torch.fft.rfft(self.Xt[i].to(real), dim=1)  # (b, K, d)
        if self.activation == "circulant":
            R = torch.fft.rfft(Z[0].reshape(self.s, self.d, self.c), dim=0)
        else:
            R = Z
        out = torch.fft.irfft(torch.einsum("nwa,wab->nwb", Xh, R.to(Xh.dtype)), n=self.s, dim=1)
        return self._out(out)

    def design(self, idx=None):
        if self.activation != "circulant":
            raise NotImplementedError("the spectral head has no real design; use gram=False")
        i = _idx(idx)
        X = self.Xt[i]
        s = self.s
        roll = (torch.arange(s)[:, None] - torch.arange(s)[None, :]) % s
        return X[:, roll.to(X.device), :].reshape(1, -1, s * self.d)

    def weights_from_factors(self, A, B):
        d, c = self.d, self.c
        if self.activation == "circulant":
            return {"k": A[0].T.copy(), "B": B[0].reshape(-1, d, c)}
        m = max(1, max(a.shape[1] for a in A))
        W1 = np.zeros((len(A), d, m), complex)
        W2 = np.zeros((len(A), m, c), complex)
        for w, (a, b) in enumerate(zip(A, B)):
            W1[w, :, :a.shape[1]], W2[w, :a.shape[1]] = a, b
        return {"W1": W1, "W2": W2}
