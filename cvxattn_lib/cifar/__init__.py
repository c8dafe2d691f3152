"""CIFAR-100 (or any image folder) with frozen backbones: data, token features, a crash-safe feature
cache, heads, CLI.  Sources: CIFAR-100 (:mod:`.data`), torchvision-layout image folders
(:mod:`.sources`) and scikit-learn's digits written as one (:mod:`.digits`); backbones: timm models
(:mod:`.backbone`) and this library's CIFAR ResNets, one stage's H x W positions as tokens
(:mod:`.resnet`; trained on the digits by :mod:`.pretrain`); fair head comparisons (:mod:`.compare`).

``python -m cvxattn_lib.cifar extract | train | report`` runs the pipeline from a shell; the
notebook calls the same functions.  Needs the ``cifar`` extra (timm, torchvision).  The names
below are imported from their submodules on first use (PEP 562), so the command line's ``--help``
does not load the heads, the widgets or cvxpy.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

#: public name -> the submodule that defines it
_WHERE = {
    "backbone": ("DEFAULT_BACKBONE", "Backbone", "PretrainedUnavailableWarning", "run_with_backoff"),
    "cache": ("CacheCorruptError", "CacheRebuildWarning", "FeatureCache", "extract_features", "find_caches",
              "open_cache", "reduce_features"),
    "cli": ("format_table", "latest_results", "load_results", "main", "prepare_features", "resolve_heads",
            "run_heads", "save_results"),
    "data": ("CIFAR100_ARCHIVE", "CIFAR100_MD5", "CifarDataError", "CifarDataset", "CifarSplit",
             "DataUnavailableWarning", "load_cifar100", "synthetic_cifar100", "write_cifar_folder"),
    "heads": ("HEADS", "HeadResult", "HeadUnavailableError", "available_heads", "reference_beta_max",
              "train_head"),
    "resnet": ("CifarResNet", "ResNetBackbone", "load_resnet_weights", "save_resnet_weights"),
    "sources": ("load_image_folder", "write_image_folder"),
    "grid": ("TokenGridBackbone",),
    "digits": ("ensure_digits", "load_digits_split"),
    "pretrain": ("pretrain_digits", "digits_backbone", "shipped_weights"),
    "compare": ("compare_heads", "reference_beta"),
}
_ATTRIBUTES = {name: module for module, names in _WHERE.items() for name in names}
_SUBMODULES = ("backbone", "cache", "cli", "compare", "data", "digits", "explore", "grid", "heads",
               "pretrain", "resnet", "sources")

__all__ = ["explore", *_ATTRIBUTES]


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _ATTRIBUTES, _SUBMODULES)
