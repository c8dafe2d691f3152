"""Names the command line needs before torch loads (the parser's defaults and choices)."""

DEFAULT_BACKBONE = "gmlp_s16_224"
REDUCTIONS = ("none", "pca", "pool")
SOURCE_REAL = "cifar100"
SOURCE_STANDIN = "synthetic stand-in"

#: data sources of the command line's ``--data``: ``cifar100`` (falls back to the labelled stand-in)
#: or ``imagefolder:PATH`` (torchvision's ImageFolder layout, see cvxattn_lib.cifar.sources)
DATA_CIFAR100 = "cifar100"
IMAGEFOLDER = "imagefolder"
#: the real image set that ships with scikit-learn (cvxattn_lib.cifar.digits), an ImageFolder tree
#: under <data root>/digits/images made on first use
DATA_DIGITS = "digits"
#: CIFAR ResNets of our own (cvxattn_lib.cifar.resnet): architecture -> BasicBlocks per stage
RESNET_BLOCKS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9}
RESNET_STAGES = ("layer1", "layer2", "layer3")
#: the recipe of the shipped digits ResNet-20 (cvxattn_lib.cifar.pretrain; here for the parser's help)
PRETRAIN_DEFAULTS = {"arch": "resnet20", "input_size": 16, "epochs": 30, "batch_size": 64, "lr": 0.1,
                     "weight_decay": 5e-4, "shift": 2, "seed": 0}

DATA_HELP = ("cifar100 (default; a labelled synthetic stand-in when the files are missing), "
             "digits (scikit-learn's 1,797 real 8 x 8 handwritten digits, 10 classes, written once as an "
             "ImageFolder tree under <data root>/digits/images with a fixed train/test split; offline) or "
             "imagefolder:PATH, a folder in torchvision's ImageFolder layout PATH/train/<class>/*.png|jpg "
             "and PATH/test/<class>/*.png|jpg (class names = the train folder's subfolders, sorted; "
             "the data set is named after PATH's last part unless --data-name is given; images are taken "
             "class by class in turn, so --subset keeps every class)")
BACKBONE_HELP = ("a timm model that yields tokens (default {default}; e.g. vit_small_patch16_224), or a "
                 "CIFAR ResNet of this library: ARCH[:WEIGHTS][:STAGE] with ARCH one of "
                 + ", ".join(RESNET_BLOCKS) + ", WEIGHTS a .safetensors (or tensors-only torch) file "
                 "of its state dict (left out: random weights, with a warning) and STAGE one of "
                 + ", ".join(RESNET_STAGES) + " (default layer3): its H x W positions are the tokens "
                 "(layer1 32x32x16, layer2 16x16x32, layer3 8x8x64 on 32 x 32 images); e.g. "
                 "resnet20:weights/resnet20.safetensors:layer2")


def parse_data(spec: str) -> tuple[str, str | None]:
    """``'cifar100'`` -> ``('cifar100', None)``; ``'digits'`` -> ``('digits', None)``;
    ``'imagefolder:PATH'`` -> ``('imagefolder', PATH)``; anything else a ``ValueError`` naming ``--data``."""
    if not isinstance(spec, str):
        raise ValueError(f"--data must be a string, got {spec!r}")
    if spec in (DATA_CIFAR100, DATA_DIGITS):
        return spec, None
    kind, sep, path = spec.partition(":")
    if kind == IMAGEFOLDER and sep and path:
        return IMAGEFOLDER, path
    raise ValueError(f"--data must be 'cifar100', 'digits' or 'imagefolder:PATH', got {spec!r}")


def is_resnet(spec) -> bool:
    """Whether a ``--backbone`` spec names one of this library's CIFAR ResNets."""
    return isinstance(spec, str) and spec.split(":", 1)[0] in RESNET_BLOCKS


def parse_backbone(spec: str) -> tuple[str, str | None, str]:
    """``'ARCH[:WEIGHTS][:STAGE]'`` -> ``(arch, weights path or None, stage)``.  The stage is the last
    part when it is one of :data:`RESNET_STAGES` (default ``layer3``); what lies between is the
    weights path (it may itself contain ':')."""
    if not is_resnet(spec):
        raise ValueError(f"backbone={spec!r} is not a CIFAR ResNet spec ARCH[:WEIGHTS][:STAGE] with ARCH "
                         f"one of {', '.join(RESNET_BLOCKS)}")
    arch, _, rest = spec.partition(":")
    stage = "layer3"
    head, sep, last = rest.rpartition(":")
    if last in RESNET_STAGES:
        stage, rest = last, head
    elif not sep and rest in RESNET_STAGES:
        stage, rest = rest, ""
    elif rest and last.startswith("layer"):
        raise ValueError(f"backbone={spec!r}: stage {last!r} is not one of {', '.join(RESNET_STAGES)}")
    return arch, (rest or None), stage


#: the full-scale job (README, notebook 05 and ``train --help`` give this one command): every head on
#: all of CIFAR-100 on one GPU; its defaults (--reduce-dim auto --reduce-tokens auto --method auto)
#: pick per head the features and solver that fit (see ``train --plan``)
FULL_COMMAND = "python -m cvxattn_lib.cifar train --heads all --beta-fractions 0.01,0.1,0.5 --device cuda"

#: (tokens, features) of backbones whose shape is known without running them (for ``train --plan``);
#: CIFAR ResNet stages on 32 x 32 images
KNOWN_SHAPES = {"gmlp_s16_224": (196, 256)}
RESNET_SHAPES = {"layer1": (32, 16), "layer2": (16, 32), "layer3": (8, 64)}  # grid side, channels
#: (train images, test images, classes) of the known data sets
DATA_SIZES = {DATA_CIFAR100: (50000, 10000, 100)}
AUTO = "auto"

TRAIN_EPILOG = f"""Full-scale run (all of CIFAR-100, every head, one GPU):
  {FULL_COMMAND}
Add --plan first to see each head's memory, time and the features / solver it gets (a dry run that
reads no features); the same check runs at the start of train: a head that would not fit the host
or the device is skipped with the option that makes it fit (recorded in the results), or refused
with --strict."""


def reduction_value(text: str):
    """``--reduce-dim`` / ``--reduce-tokens``: an integer >= 1, ``auto`` (chosen per head by the
    plan) or ``none`` (no reduction)."""
    import argparse

    low = str(text).strip().lower()
    if low in (AUTO, "none"):
        return low
    try:
        value = int(low)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, 'auto' or 'none', got {text!r}")
    return value
