r"""Any frozen local torch module whose output is a feature map, as a backbone whose tokens are the
map's positions.

:class:`TokenGridBackbone` wraps a module that maps normalised images (B, 3, H, W) to a feature map
(B, C, H', W') (a conv stage) or to tokens (B, s, d) already; uint8 images are scaled to [0, 1],
resized (bilinear) to ``input_size`` if they are not, normalised with ``mean`` and ``std`` and run
in eval mode without gradients.  A map becomes :math:`H' W'` tokens of :math:`C` features in
row-major order, ``tokens[b, h W' + w, c] = fmap[b, c, h, w]``, so a token grid of side
:math:`\sqrt{s}` is the map's own layout (what the token-group plots draw).

It has what the feature cache and the heads use (``name``, ``pretrained``, ``transform``,
``device``, ``tokens``, ``token_shape``), so ``prepare_features(backbone=TokenGridBackbone(...))``
and :func:`~cvxattn_lib.cifar.cache.extract_features` take it like a timm backbone.  Its
``transform`` names the input size, the normalisation and the sha256 of the module's state dict
(every tensor's name, dtype, shape and bytes), so other weights are another cache.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from ..validation import positive_int
from .frozen import FrozenImageModel


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's state dict: every tensor's name, dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class TokenGridBackbone(FrozenImageModel):
    """A frozen module as a backbone: uint8 images (B, 3, H, W) -> float32 tokens (B, s, d)."""

    num_prefix_tokens = 0

    def __init__(self, module: nn.Module, name: str, input_size=(32, 32), mean=(0.5, 0.5, 0.5),
                 std=(0.5, 0.5, 0.5), pretrained: bool = False, device=None):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(name, str) or not name or any(c in name for c in "/\\ \0"):
            raise ValueError(f"name must be a non-empty string without '/', '\\' or spaces (it goes into "
                             f"cache folder names), got {name!r}")
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if len(size) != 2:
            raise ValueError(f"input_size must be an int or (H, W), got {input_size!r}")
        self.input_size = tuple(positive_int("input_size", v) for v in size)
        for what, v in (("mean", mean), ("std", std)):
            arr = np.asarray(v, dtype=float)
            if arr.shape != (3,) or not np.all(np.isfinite(arr)) or (what == "std" and np.any(arr <= 0)):
                bound = " > 0" if what == "std" else ""
                raise ValueError(f"{what} must be 3 finite numbers{bound}, got {v!r}")
        self.module = module
        self.module.eval().requires_grad_(False)
        self.name, self.pretrained = name, bool(pretrained)
        self.weights_sha256 = state_sha256(module)
        self._freeze(self.input_size, mean, std, device)

    @property
    def transform(self) -> str:
        """What is done to an image before and in the module, for cache keys."""
        return f"{self._transform_key()}-{self.name}-state-sha256-{self.weights_sha256}"

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The module's output on normalised images."""
        return self.module(x)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> the module's output (a map (B, C, H', W') or tokens) in float32."""
        with torch.no_grad():
            return self._features(self.prepare(x)).float()

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> tokens (B, s, d); a map's position ``h W' + w`` holds
        ``fmap[:, :, h, w]``."""
        out = self.feature_map(x)
        if out.ndim == 4:
            return out.flatten(2).transpose(1, 2).contiguous()
        if out.ndim == 3:
            return out.contiguous()
        raise ValueError(f"backbone {self.name!r} gives an output of shape {tuple(out.shape)}, neither a "
                         "feature map (B, C, H, W) nor tokens (B, s, d)")

