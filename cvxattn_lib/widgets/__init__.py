"""Widget builders: one call returns the widget; no global state, so tests can drive them.

Callbacks draw into an ``ipywidgets.Output`` through ``Output.capture`` (errors would otherwise
vanish in JupyterLab); solves are cached per widget, and sliders that solve use
``continuous_update=False``.  One module per notebook topic; :mod:`.base` holds what they share.
"""

from .attention import (AttentionRankExplorer, ClusteringExplorer, attention_rank_explorer,
                        clustering_explorer)
from .base import Explorer, log_slider
from .cifar import SweepExplorer, TokenGroupExplorer, cifar_sweep_explorer, cifar_token_explorer
from .mixer import MixerExplorer, mixer_beta_explorer
from .mlp import BetaExplorer, mlp_beta_explorer

__all__ = ["Explorer", "log_slider", "BetaExplorer", "mlp_beta_explorer", "AttentionRankExplorer",
           "ClusteringExplorer", "attention_rank_explorer", "clustering_explorer", "MixerExplorer",
           "mixer_beta_explorer", "SweepExplorer", "TokenGroupExplorer", "cifar_sweep_explorer",
           "cifar_token_explorer"]
