r"""CIFAR-style ResNets (20/32/44/56) of our own, and a frozen backbone that returns one stage's
feature map as a token grid.

The module layout follows the CIFAR ResNets of He et al. 2016, Sec. 4.2, as laid out in the
BSD-2 repository ``akamaster/pytorch_resnet_cifar10``, so that its checkpoints load by name:
``conv1`` (3 -> 16, 3 x 3) and ``bn1``; ``layer1``, ``layer2``, ``layer3`` of :math:`n` BasicBlocks
each (16, 32, 64 channels; stride 2 at the first block of layer2 and layer3) with option-A
shortcuts (stride-2 subsampling and zero padding of the channels, no parameters); global average
pooling; ``linear`` (64 -> classes).  Depth :math:`6n + 2`: ResNet-20/32/44/56 have
:math:`n = 3, 5, 7, 9`.  State-dict keys: ``conv1.weight``, ``bn1.{weight,bias,running_mean,
running_var,num_batches_tracked}``, ``layer1.0.conv1.weight``, ``layer1.0.bn1.*``, ...,
``linear.weight``, ``linear.bias``.  This file was written for this collection; no code or weights
of that repository are copied or shipped.  The weights this collection ships
(``data/weights/resnet20_digits.safetensors``) were trained here by :mod:`.pretrain`.

Weights are read by :func:`load_resnet_weights` only through safetensors or
``torch.load(weights_only=True)`` (no code can run).  The repository's checkpoints hold
``{"state_dict": {...}}`` saved from a ``DataParallel`` model, so every key starts with
``module.``; both are unwrapped.

A stage's output on a 32 x 32 image is a feature map (C, H, W): ``layer1`` 16 x 32 x 32,
``layer2`` 32 x 16 x 16, ``layer3`` 64 x 8 x 8.  :class:`ResNetBackbone` turns it into
:math:`H W` tokens of :math:`C` features, ``tokens[b, h * W + w, c] = fmap[b, c, h, w]`` (row-major
positions), the same interface as :class:`cvxattn_lib.cifar.backbone.Backbone`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import choice, positive_int, seed_value
from .grid import TokenGridBackbone
from .names import RESNET_BLOCKS, RESNET_STAGES, parse_backbone

#: stage -> (channels, spatial size on a 32 x 32 input)
STAGE_SHAPES = {"layer1": (16, 32), "layer2": (32, 16), "layer3": (64, 8)}
#: stage -> (channels, downsampling factor): the map after a stage is (C, H / f, W / f)
STAGE_STRIDES = {"layer1": (16, 1), "layer2": (32, 2), "layer3": (64, 4)}
#: keys of a safetensors file's metadata that :class:`ResNetBackbone` reads (strings): the input size
#: the weights were trained at and their normalisation ("m,m,m"); absent: 32 and :data:`MEAN`, :data:`STD`
INPUT_KEYS = ("input_size", "mean", "std")
#: a metadata key whose value is a JSON object of string entries, read as if they were top-level keys
#: (safetensors stores metadata keys in no fixed order; one key keeps a file's bytes reproducible)
METADATA_KEY = "cvxattn"
#: the normalisation of the akamaster training script (ImageNet's mean and std)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """Two 3 x 3 conv-BN layers with a ReLU between, plus the option-A shortcut, then a ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.subsample = stride != 1 or in_planes != planes
        self.pad = (planes - in_planes) // 2

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Option A: identity, or every other pixel with the channels zero-padded on both sides."""
        if not self.subsample:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32 x 32 images; :meth:`stage` returns the feature map after a stage."""

    def __init__(self, blocks: int = 3, num_classes: int = 10):
        super().__init__()
        blocks = positive_int("blocks", blocks)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes = 16
        for i, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(planes, width, stride if b == 0 else 1))
                planes = width
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.linear = nn.Linear(64, positive_int("num_classes", num_classes))

    def stage(self, x: torch.Tensor, name: str = "layer3") -> torch.Tensor:
        """The feature map (B, C, H, W) after stage ``name`` (``layer1``, ``layer2`` or ``layer3``)."""
        choice("stage", name, RESNET_STAGES)
        out = F.relu(self.bn1(self.conv1(x)))
        for s in RESNET_STAGES:
            out = getattr(self, s)(out)
            if s == name:
                return out
        raise AssertionError("unreachable")  # pragma: no cover

    def forward(self, x):
        out = self.stage(x, "layer3")
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet(arch: str = "resnet20", num_classes: int = 10) -> CifarResNet:
    """``resnet20`` / ``resnet32`` / ``resnet44`` / ``resnet56`` with random weights."""
    choice("arch", arch, tuple(RESNET_BLOCKS))
    return CifarResNet(RESNET_BLOCKS[arch], num_classes)


_RENAMED = (("compressible_conv", "conv"), ("compressible_linear", "linear"))


def unwrap_state_dict(obj) -> dict:
    """A plain ``{name: tensor}`` from a checkpoint: the dict under ``state_dict`` (or ``model``) if
    there is one, with a leading ``module.`` (``DataParallel``) stripped from every key and the
    ``compressible_conv1`` / ``compressible_linear`` names of later versions of that repository's
    model file read as ``conv1`` / ``linear``."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("the weights file does not hold a state dict of tensors (nor one under "
                         "'state_dict')")
    out = {}
    for k, v in obj.items():
        k = k[len("module."):] if k.startswith("module.") else k
        for old, new in _RENAMED:
            k = k.replace(old, new)
        out[k] = v
    return out


def load_resnet_weights(path) -> dict:
    """The state dict in ``path``: ``.safetensors`` through safetensors, else
    ``torch.load(weights_only=True)``; unwrapped by :func:`unwrap_state_dict`."""
    from .backbone import load_weights_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"backbone weights {str(path)!r} is not a file; give a .safetensors (or a "
                         "torch checkpoint of tensors) of a CIFAR ResNet")
    try:
        raw = load_weights_file(path)
    except Exception as exc:
        raise ValueError(f"backbone weights {path} could not be read as safetensors or a tensors-only "
                         f"torch checkpoint ({type(exc).__name__}: {exc})") from exc
    return unwrap_state_dict(raw)


def save_resnet_weights(model: nn.Module, path, metadata: dict | None = None) -> Path:
    """Write ``model``'s state dict as safetensors (contiguous CPU tensors), with ``metadata`` (string
    keys and values; e.g. :data:`INPUT_KEYS`, which :class:`ResNetBackbone` reads back)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = None if metadata is None else {str(k): str(v) for k, v in metadata.items()}
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata=meta)
    return path


def weights_metadata(path) -> dict:
    """The metadata (str -> str) of a ``.safetensors`` weights file ({} for other files or none), the
    entries of :data:`METADATA_KEY` included as top-level keys."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if METADATA_KEY in meta:
        try:
            inner = json.loads(meta.pop(METADATA_KEY))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: metadata {METADATA_KEY!r} is not JSON ({exc})") from None
        if not isinstance(inner, dict):
            raise ValueError(f"{path}: metadata {METADATA_KEY!r} must be a JSON object")
        meta.update({str(k): str(v) for k, v in inner.items()})
    return meta


def input_spec(metadata: dict) -> tuple[int, tuple, tuple]:
    """``(input size, mean, std)`` from a weights file's metadata (:data:`INPUT_KEYS`), defaulting to
    32, :data:`MEAN`, :data:`STD`; a bad value is a ``ValueError`` naming the key."""
    size = metadata.get("input_size", "32")
    try:
        size = int(size)
        if size < 4 or size % 4:
            raise ValueError
    except ValueError:
        raise ValueError(f"weights metadata input_size must be an integer >= 4 divisible by 4, got "
                         f"{metadata.get('input_size')!r}") from None
    out = []
    for key, default in (("mean", MEAN), ("std", STD)):
        if key not in metadata:
            out.append(default)
            continue
        try:
            vals = tuple(float(v) for v in metadata[key].split(","))
        except ValueError:
            vals = ()
        if len(vals) != 3 or (key == "std" and min(vals) <= 0):
            raise ValueError(f"weights metadata {key} must be three comma-separated numbers"
                             f"{' > 0' if key == 'std' else ''}, got {metadata[key]!r}")
        out.append(vals)
    return size, out[0], out[1]


def convert_to_safetensors(src, dst, arch: str = "resnet20") -> str:
    """Convert a CIFAR ResNet checkpoint (e.g. one of ``akamaster/pytorch_resnet_cifar10``'s
    ``pretrained_models/resnetNN-*.th``, read with ``torch.load(weights_only=True)``) to a
    safetensors file ``dst`` with our key names (``module.`` stripped); the weights must fit ``arch``
    exactly (:func:`build_resnet`; BatchNorm's ``num_batches_tracked``, which checkpoints of
    torch < 0.4.1 lack, is set to 0).  Returns the sha256 of ``dst`` (record it beside the file)."""
    model, _ = build_resnet(arch, src)
    save_resnet_weights(model, dst)
    return file_sha256(dst)


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def build_resnet(arch: str, weights=None, seed: int = 0):
    """``(model in eval mode, sha256 of the weights file or None)``: the weights of ``weights`` (a
    path), loaded strictly (every key must match; the ``linear`` layer may have any number of
    classes), else random weights drawn from ``seed`` with a warning."""
    from .backbone import PretrainedUnavailableWarning

    seed = seed_value("seed", seed)
    if weights is None:
        warnings.warn(f"no weights file for {arch}: using RANDOM weights (seed {seed}); features from "
                      "random weights are far weaker. Give --backbone "
                      f"{arch}:PATH.safetensors:STAGE for trained ones.", PretrainedUnavailableWarning,
                      stacklevel=3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = resnet(arch)
        return model.eval(), None
    state = load_resnet_weights(weights)
    classes = state.get("linear.weight", torch.zeros(10, 64)).shape[0]
    model = resnet(arch, num_classes=classes)
    want, got = set(model.state_dict()), set(state)
    for key in want - got:  # checkpoints of torch < 0.4.1 lack BatchNorm's counter (unused in eval)
        if key.endswith(".num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
    got = set(state)
    if want != got:
        missing, extra = sorted(want - got), sorted(got - want)
        raise ValueError(f"backbone weights {weights} do not fit {arch}: missing keys {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}, unexpected keys {extra[:5]}"
                         f"{' ...' if len(extra) > 5 else ''} (is it another depth?)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"backbone weights {weights} do not fit {arch}: {exc}") from exc
    return model.eval(), file_sha256(weights)


class ResNetBackbone(TokenGridBackbone):
    """A frozen CIFAR ResNet that returns the tokens of one stage: uint8 images (B, 3, H, W) ->
    float32 (B, H' W', C).  Images are scaled to [0, 1], resized (bilinear) to the input size if they
    are not, normalised (a :class:`~cvxattn_lib.cifar.grid.TokenGridBackbone` whose module is the
    ResNet up to the stage).  Input size and normalisation: those a safetensors weights file names in
    its metadata (:data:`INPUT_KEYS`; e.g. 16 for the digits ResNet of :mod:`.pretrain`), else 32 x 32
    and :data:`MEAN`, :data:`STD`.  ``spec`` is the command line's, e.g.
    ``resnet20:weights.safetensors:layer2`` (see :func:`cvxattn_lib.cifar.names.parse_backbone`)."""

    def __init__(self, spec: str = "resnet20", device=None, seed: int = 0):
        arch, weights, stage = parse_backbone(spec)
        seed = seed_value("seed", seed)
        model, sha = build_resnet(arch, weights, seed)
        size, mean, std = input_spec(weights_metadata(weights) if weights is not None else {})
        self._mean_std = (mean, std)
        # the cache key and table name: architecture, stage and which weights (not the path)
        tag = sha[:12] if sha is not None else f"random{seed}"
        super().__init__(model, f"{arch}-{stage}-{tag}", (size, size), mean, std, pretrained=sha is not None,
                         device=device)
        self.arch, self.stage, self.seed = arch, stage, seed
        self.file_sha256 = sha
        self.weights_path = None if weights is None else str(weights)

    @property
    def model(self) -> CifarResNet:
        return self.module

    @property
    def transform(self) -> str:
        mean = ",".join(f"{v:.4g}" for v in self._mean_std[0])
        std = ",".join(f"{v:.4g}" for v in self._mean_std[1])
        weights = f"-weights-sha256-{self.file_sha256}" if self.pretrained else \
            f"-random-init-seed{self.seed}"
        h, w = self.input_size
        return f"u8-bilinear{h}x{w}-mean{mean}-std{std}-{self.arch}-{self.stage}{weights}"

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.stage(x, self.stage)

    def token_shape(self) -> tuple[int, int]:
        channels, factor = STAGE_STRIDES[self.stage]
        side = self.input_size[0] // factor
        return side * side, channels
