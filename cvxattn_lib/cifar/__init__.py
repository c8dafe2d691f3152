"""CIFAR-100 with frozen backbones: data, token features, a crash-safe feature cache, heads, CLI.

``python -m cvxattn_lib.cifar extract | train | report`` runs the pipeline from a shell; the
notebook calls the same functions.  Needs the ``cifar`` extra (timm, torchvision).
"""

from .backbone import DEFAULT_BACKBONE, Backbone, PretrainedUnavailableWarning, run_with_backoff
from .cache import (CacheCorruptError, CacheRebuildWarning, FeatureCache, extract_features, find_caches,
                    open_cache, reduce_features)
from .cli import (format_table, latest_results, load_results, main, prepare_features, resolve_heads,
                  run_heads, save_results)
from .data import (CIFAR100_ARCHIVE, CIFAR100_MD5, CifarDataError, CifarDataset, CifarSplit,
                   DataUnavailableWarning, load_cifar100, synthetic_cifar100, write_cifar_folder)
from . import explore
from .heads import HEADS, HeadResult, HeadUnavailableError, available_heads, train_head

__all__ = ["explore", "DEFAULT_BACKBONE", "Backbone", "PretrainedUnavailableWarning", "run_with_backoff",
           "CacheCorruptError", "CacheRebuildWarning", "FeatureCache", "extract_features", "find_caches",
           "open_cache", "reduce_features", "CIFAR100_ARCHIVE", "CIFAR100_MD5", "CifarDataError",
           "CifarDataset", "CifarSplit", "DataUnavailableWarning", "load_cifar100", "synthetic_cifar100",
           "write_cifar_folder", "format_table", "latest_results", "load_results", "main", "prepare_features",
           "resolve_heads", "run_heads", "save_results", "HEADS",
           "HeadResult", "HeadUnavailableError", "available_heads", "train_head"]
