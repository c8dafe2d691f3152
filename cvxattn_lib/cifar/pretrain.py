r"""Pretraining a CIFAR ResNet of this library on the digits' ``pretrain`` split, so that the digits'
heads sit on a real trained backbone that the repository carries (weights of our own, MIT like the
rest of the project).

:func:`pretrain_resnet` trains a :class:`~cvxattn_lib.cifar.resnet.CifarResNet` with its classifier
on uint8 images, seeded and deterministic (one ``torch.Generator`` for the shuffles and shifts, the
initial weights drawn from ``seed`` in a forked RNG; the same torch build and thread count give the
same weights bit for bit):

* preprocessing exactly as the frozen backbone does it later (:class:`~cvxattn_lib.cifar.frozen.
  FrozenImageModel`): :math:`x/255`, bilinear resize to ``input_size``, then
  :math:`(x-\mu)/\sigma` with one mean and standard deviation of the training pixels for all three
  channels (the digits are grey);
* augmentation: every image shifted by a random whole number of pixels in
  :math:`[-\text{shift},\text{shift}]^2` after the resize (zero padding: the digits' background);
* SGD with Nesterov momentum 0.9, weight decay ``weight_decay``, learning rate ``lr`` on a cosine
  schedule over all steps, minibatches of ``batch_size``, cross-entropy.

:func:`pretrain_digits` does this for ResNet-20 on the ``pretrain`` split of :mod:`.digits` (8 x 8
images resized to 16 x 16, so ``layer2`` is an 8 x 8 grid of 32 features: one token per pixel of
the original image), measures the accuracy on the ``train`` and ``test`` splits (held out: the
heads' images, never seen in pretraining), and writes safetensors whose metadata carry the input size,
the normalisation (read back by :class:`~cvxattn_lib.cifar.resnet.ResNetBackbone`), the recipe and
the accuracies.  ``python -m cvxattn_lib.cifar pretrain-digits`` runs it;
``data/weights/resnet20_digits.safetensors`` is its output with the defaults, and
:func:`shipped_weights` checks that file's sha256 against :data:`WEIGHTS_SHA256` when it is loaded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..validation import positive_int, positive_scalar, seed_value
from .names import PRETRAIN_DEFAULTS
from .resnet import METADATA_KEY

#: the recipe of the shipped weights (``pretrain-digits`` defaults)
DEFAULTS = PRETRAIN_DEFAULTS
WEIGHTS_FILE = "resnet20_digits.safetensors"
#: sha256 of data/weights/resnet20_digits.safetensors, checked by :func:`shipped_weights`
WEIGHTS_SHA256 = "87050df10132bdf5120025497edcf042f9bcd41043ef868cf4d59155022ae31f"


def _to3(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) grey or (N, 3, H, W) -> uint8 tensor (N, 3, H, W)."""
    x = torch.as_tensor(np.asarray(images, dtype=np.uint8))
    if x.ndim == 3:
        x = x[:, None].expand(-1, 3, -1, -1)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W) or (N, 3, H, W), got shape {tuple(x.shape)}")
    return x.contiguous()


def _resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float [0, 1] at size x size (bilinear, as FrozenImageModel.prepare)."""
    x = x.float().div_(255.0)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def _shifted(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random (dy, dx) in [-shift, shift]^2, zeros shifted in."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    pad = F.pad(x, (shift, shift, shift, shift))
    off = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
    return torch.stack([pad[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(off.tolist())])


def accuracy(model, images, labels, input_size: int, mean: float, std: float, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on uint8 images with the training preprocessing."""
    x = _to3(images)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            xb = (_resized(x[i:i + batch_size], input_size) - mean) / std
            right += int((model(xb).argmax(1) == y[i:i + batch_size]).sum())
    return right / max(len(y), 1)


def pretrain_resnet(images, labels, arch: str = "resnet20", input_size: int = 16, epochs: int = 30,
                    batch_size: int = 64, lr: float = 0.1, weight_decay: float = 5e-4, shift: int = 2,
                    seed: int = 0, progress: bool = True):
    """Train a CIFAR ResNet with its classifier on ``images`` (uint8 (N, H, W) or (N, 3, H, W)) and
    integer ``labels`` (module docstring).  Returns ``(model in eval mode, info)``; ``info`` holds the
    normalisation (``mean``, ``std``), the recipe and the last epoch's training loss and accuracy."""
    from .resnet import resnet

    input_size = positive_int("input_size", input_size)
    if input_size % 4:
        raise ValueError(f"input_size must be divisible by 4 (two stride-2 stages), got {input_size}")
    epochs, batch_size = positive_int("epochs", epochs), positive_int("batch_size", batch_size)
    lr, weight_decay = positive_scalar("lr", lr), float(weight_decay)
    if not np.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    shift = int(shift)
    if shift < 0:
        raise ValueError(f"shift must be an integer >= 0, got {shift}")
    seed = seed_value("seed", seed)
    x = _to3(images)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if y.shape != (x.shape[0],) or y.min() < 0:
        raise ValueError(f"labels must be N = {x.shape[0]} integers >= 0, got shape {tuple(y.shape)}")
    classes = int(y.max()) + 1
    pix = x.float().div(255.0)
    mean, std = round(float(pix.mean()), 6), round(float(pix.std()), 6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet(arch, num_classes=classes)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    base = _resized(x, input_size)
    loss_sum = acc = 0.0
    bar = tqdm(range(epochs), desc=f"pretrain {arch}", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        order = torch.randperm(len(y), generator=gen)
        loss_sum, right = 0.0, 0
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            xb = (_shifted(base[idx], shift, gen) - mean) / std
            out = model(xb)
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            right += int((out.argmax(1) == y[idx]).sum())
        acc = right / len(y)
        bar.set_postfix(loss=f"{loss_sum / len(y):.3f}", acc=f"{acc:.3f}")
    model.eval()
    info = {"arch": arch, "input_size": input_size, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "weight_decay": weight_decay, "shift": shift, "seed": seed, "mean": mean, "std": std,
            "classes": classes, "n_train": int(len(y)), "train_loss_last_epoch": loss_sum / len(y),
            "train_accuracy_last_epoch": acc}
    return model, info


def pretrain_digits(out=None, arch: str = DEFAULTS["arch"], input_size: int = DEFAULTS["input_size"],
                    epochs: int = DEFAULTS["epochs"], batch_size: int = DEFAULTS["batch_size"],
                    lr: float = DEFAULTS["lr"], weight_decay: float = DEFAULTS["weight_decay"],
                    shift: int = DEFAULTS["shift"], seed: int = DEFAULTS["seed"], n: int | None = None,
                    progress: bool = True, verbose: bool = True) -> dict:
    """Pretrain on the digits' ``pretrain`` split (its first ``n`` images when given: for tests),
    score on the held-out ``train`` and ``test`` splits, and write the weights to ``out`` (safetensors
    with the metadata of the module docstring) when given.  Returns the info dict (recipe,
    normalisation, accuracies, seconds, ``sha256`` of ``out``)."""
    from .digits import split_arrays
    from .resnet import file_sha256, save_resnet_weights

    images, labels, _ = split_arrays("pretrain")
    if n is not None:
        n = positive_int("n", n)
        images, labels = images[:n], labels[:n]
    t0 = time.perf_counter()
    model, info = pretrain_resnet(images, labels, arch, input_size, epochs, batch_size, lr, weight_decay,
                                  shift, seed, progress)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    info["threads"] = torch.get_num_threads()
    info["torch"] = torch.__version__
    for split in ("train", "test"):  # the heads' images: held out from pretraining
        im, lab, _ = split_arrays(split)
        info[f"heldout_{split}_accuracy"] = accuracy(model, im, lab, input_size, info["mean"], info["std"])
        info[f"heldout_{split}_n"] = int(len(lab))
    info["dataset"] = "digits (scikit-learn load_digits), split 'pretrain' of cvxattn_lib.cifar.digits"
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"input_size": str(input_size), "mean": ",".join([str(info["mean"])] * 3),
                "std": ",".join([str(info["std"])] * 3),
                "recipe": json.dumps({k: v for k, v in info.items() if k != "seconds"}, sort_keys=True),
                "licence": "MIT (the cvxattn project)"}
        tmp = out.with_name(f".{out.name}.tmp")
        # one metadata key: safetensors writes a map's keys in no fixed order, one key keeps the bytes fixed
        save_resnet_weights(model, tmp, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
        tmp.replace(out)
        info["sha256"] = file_sha256(out)
    if verbose:
        print(f"{arch} on {len(labels)} digits ({epochs} epochs, seed {seed}, {info['seconds']} s): held-out "
              f"accuracy {100 * info['heldout_train_accuracy']:.1f}% on 'train' ({info['heldout_train_n']}), "
              f"{100 * info['heldout_test_accuracy']:.1f}% on 'test' ({info['heldout_test_n']})"
              + (f"; wrote {out} (sha256 {info['sha256']})" if out is not None else ""))
    info["model"] = model
    return info


def repo_weights_dir() -> Path:
    """``data/weights`` of the source checkout (where the shipped weights are committed)."""
    from ..runtime import _REPO_ROOT

    return _REPO_ROOT / "data" / "weights"


def shipped_weights(verify: bool = True) -> Path:
    """The path of the shipped ``resnet20_digits.safetensors``, its sha256 checked against
    :data:`WEIGHTS_SHA256` (a ``ValueError`` when it differs or the file is missing, naming the
    command that makes it)."""
    from .resnet import file_sha256

    path = repo_weights_dir() / WEIGHTS_FILE
    make = "python -m cvxattn_lib.cifar pretrain-digits --out " + str(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing (it ships with a source checkout of cvxattn); make it with: "
                         f"{make}")
    if verify:
        got = file_sha256(path)
        if got != WEIGHTS_SHA256:
            raise ValueError(f"{path} has sha256 {got}, expected {WEIGHTS_SHA256}: not the shipped weights "
                             f"(restore it with git, or retrain with: {make} and update WEIGHTS_SHA256)")
    return path


def digits_backbone(stage: str = "layer2", verify: bool = True) -> str:
    """The ``--backbone`` spec of the shipped digits ResNet-20 at ``stage``:
    ``resnet20:<path>:<stage>`` (the file's sha256 checked)."""
    from .names import RESNET_STAGES

    if stage not in RESNET_STAGES:
        raise ValueError(f"stage must be one of {', '.join(RESNET_STAGES)}, got {stage!r}")
    return f"resnet20:{shipped_weights(verify)}:{stage}"
