"""What every frozen backbone shares: uint8 images in, the model's input size and normalisation,
eval mode for good, and the part of the cache key that names the image transform."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class FrozenImageModel(torch.nn.Module):
    r"""Base of the backbones: ``prepare(x)`` maps uint8 images (B, 3, H, W) to
    :math:`(x/255 - \mathrm{mean})/\mathrm{std}` at ``input_size`` (bilinear resize when the size
    differs); subclasses call :meth:`_freeze` at the end of ``__init__`` and define ``tokens``."""

    def _freeze(self, input_size: tuple[int, int], mean, std, device) -> None:
        """Set the input size, the normalisation buffers and the device; switch to eval for good."""
        from ..runtime import device as pick_device

        self.input_size = tuple(int(v) for v in input_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.to(self.device)
        self.train(False)

    def train(self, mode: bool = True):
        """Always eval: the backbone is frozen (dropout and norm statistics never change)."""
        return super().train(False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) on any device -> normalised float32 at ``input_size`` on ``device``."""
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def _transform_key(self) -> str:
        """Input size and normalisation, as the start of a cache key's transform string."""
        h, w = self.input_size
        mean = ",".join(f"{v:.4g}" for v in self.mean.flatten().tolist())
        std = ",".join(f"{v:.4g}" for v in self.std.flatten().tolist())
        return f"u8-bilinear{h}x{w}-mean{mean}-std{std}"

    def forward(self, x):
        return self.tokens(x)

    def token_shape(self) -> tuple[int, int]:
        """(s, d) of one image's tokens, from a dry run on one blank image."""
        blank = torch.zeros(1, 3, *self.input_size, dtype=torch.uint8)
        return tuple(self.tokens(blank).shape[1:])
