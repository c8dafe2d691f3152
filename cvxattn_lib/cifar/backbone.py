r"""Frozen timm backbones that turn images into tokens, and batched extraction with OOM back-off.

A :class:`Backbone` maps uint8 images (B, 3, H, W) to tokens (B, s, d): on the device the images
become floats in [0, 1], are resized (bilinear) to the model's input size (224 for ``gmlp_s16_224``),
normalised with the model's ``pretrained_cfg`` mean and std, and go through ``forward_features``;
class/prefix tokens (``num_prefix_tokens``, e.g. ViT's [CLS]) are dropped, and a CNN's (B, C, h, w)
map becomes h*w tokens.  gMLP-S/16 at 224 gives 196 tokens x 256 features.

Pretrained weights: tried from the local Hugging Face cache (read by :func:`load_weights_file`:
safetensors, or ``torch.load(weights_only=True)``, never an unrestricted pickle), or downloaded when
the hub answers (probed over HTTP, so through ``HTTPS_PROXY`` when set); if
neither works the backbone falls back to random weights with a visible
:class:`PretrainedUnavailableWarning` (features from random weights are much weaker).
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch

from ..validation import seed_value
from .frozen import FrozenImageModel
from .names import DEFAULT_BACKBONE



class PretrainedUnavailableWarning(UserWarning):
    """Pretrained weights could not be loaded; the backbone has random weights."""


def _hub_reachable(url: str = "https://huggingface.co", timeout: float = 3.0) -> bool:
    """Whether the hub answers an HTTP request within ``timeout`` s, through ``HTTPS_PROXY`` when set
    (offline: fail fast instead of huggingface_hub's minute of retries)."""
    from .net import reachable

    return reachable(url, timeout=timeout)


def _cached_weights(cfg: dict):
    """Path of the model's weights in the local Hugging Face cache, or None."""
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return None
    for fname in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(hub_id, fname)
        if isinstance(path, str):
            return path
    return None


def load_weights_file(path) -> dict:
    """A state dict from ``path`` without running code: ``.safetensors`` through safetensors (no
    pickle at all), anything else through ``torch.load(weights_only=True)`` (tensors and plain
    containers only; a pickle that asks for anything else is refused)."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise ImportError("the CIFAR-100 backbones need timm (and torchvision for the download): "
                          "pip install -e '.[cifar]'") from exc
    return timm


def check_name(name: str) -> str:
    """``name`` if timm knows the architecture, else a ``ValueError`` with close matches."""
    timm = _timm()

    if not isinstance(name, str) or not timm.is_model(name):
        close = timm.list_models(f"*{str(name).split('.')[0][:6]}*")[:8] if isinstance(name, str) else []
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ValueError(f"backbone={name!r} is not a timm model; pass a name from timm.list_models(), "
                         f"e.g. 'gmlp_s16_224', 'vit_small_patch16_224' or 'mixer_b16_224'.{hint}")
    return name


def _random_model(name: str, seed: int):
    """The architecture with random weights drawn from ``seed`` (the same in every process, so
    caches of random-weight features are reproducible)."""
    timm = _timm()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, pretrained=False)


def create_model(name: str, pretrained: bool = True, seed: int = 0):
    """``(timm model, pretrained actually loaded)``; falls back to random weights (drawn from
    ``seed``) with a :class:`PretrainedUnavailableWarning`."""
    timm = _timm()

    check_name(name)
    if not pretrained:
        return _random_model(name, seed), False
    cfg = timm.create_model(name, pretrained=False, num_classes=0).pretrained_cfg
    cached = _cached_weights(cfg)
    try:
        if cached is not None:  # loaded here, safely, rather than by whatever timm version is installed
            model = timm.create_model(name, pretrained=True,
                                      pretrained_cfg_overlay={"state_dict": load_weights_file(cached)})
            return model, True
        if _hub_reachable():
            return timm.create_model(name, pretrained=True), True
        reason = "the Hugging Face hub is unreachable (offline) and the weights are not in the local cache"
    except Exception as exc:  # download or loading failure
        reason = f"{type(exc).__name__}: {exc}"
    warnings.warn(f"Pretrained weights for {name} could not be loaded ({reason}); using RANDOM weights "
                  f"(pretrained=False). Features from random weights are far weaker; get the weights on a "
                  f"machine with internet (they land in ~/.cache/huggingface) for real results.",
                  PretrainedUnavailableWarning, stacklevel=2)
    return _random_model(name, seed), False


class Backbone(FrozenImageModel):
    """A frozen timm model in eval mode that returns tokens (B, s, d) from uint8 images."""

    def __init__(self, name: str = DEFAULT_BACKBONE, pretrained: bool = True, device=None, seed: int = 0):
        super().__init__()
        self.name = name
        self.seed = seed_value("seed", seed)
        self.model, self.pretrained = create_model(name, pretrained, self.seed)
        self.model.eval().requires_grad_(False)
        cfg = self.model.pretrained_cfg
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
        self._freeze(cfg.get("input_size", (3, 224, 224))[1:], cfg.get("mean", (0.5, 0.5, 0.5)),
                     cfg.get("std", (0.5, 0.5, 0.5)), device)

    @property
    def transform(self) -> str:
        """What is done to an image before the model, for cache keys."""
        weights = "" if self.pretrained else f"-random-init-seed{self.seed}"
        return self._transform_key() + weights

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> tokens (B, s, d) in float32 (autocast fp16 on CUDA)."""
        x = self.prepare(x)
        amp = (torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda"
               else nullcontext())
        with torch.no_grad(), amp:
            out = self.model.forward_features(x)
        if out.ndim == 4:  # CNN feature map: NCHW (or NHWC) -> tokens
            nf = getattr(self.model, "num_features", None)
            out = out.flatten(2).transpose(1, 2) if out.shape[1] == nf else out.flatten(1, 2)
        elif out.ndim == 3:
            out = out[:, self.num_prefix_tokens:]
        else:
            raise ValueError(f"backbone {self.name!r} gives features of shape {tuple(out.shape)}, not "
                             "tokens (B, s, d); choose a ViT, Mixer, gMLP or CNN from timm")
        return out.float()


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is a CUDA (or other accelerator) out-of-memory error."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def run_with_backoff(fn: Callable[[np.ndarray], torch.Tensor], images: np.ndarray, batch_size: int,
                     min_batch: int = 1, on_backoff: Callable[[int], None] | None = None):
    """Apply ``fn`` to ``images`` in batches of ``batch_size``; on out-of-memory halve the batch size
    (freeing the CUDA cache) and retry the same batch, down to ``min_batch``.

    Returns ``(outputs concatenated on the CPU, the batch size that worked)``.  The batch size that
    worked is kept for later calls by the caller.  ``fn`` is injectable, so the back-off is tested
    on the CPU by an ``fn`` that raises ``torch.OutOfMemoryError`` above some size."""
    outs, i, n = [], 0, len(images)
    while i < n:
        oom = False
        try:
            outs.append(fn(images[i:i + batch_size]).cpu())
            i += batch_size
        except Exception as exc:
            if not is_oom(exc) or batch_size <= min_batch:
                raise
            oom = True  # free memory outside the except block: the traceback pins the batch's tensors
        if oom:
            batch_size = max(min_batch, batch_size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if on_backoff is not None:
                on_backoff(batch_size)
    return torch.cat(outs), batch_size
