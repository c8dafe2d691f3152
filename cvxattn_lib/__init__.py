"""cvxattn: attention and token mixing through convex duality (Sahiner et al., ICML 2022).

Notebooks use ``import cvxattn_lib as cal`` and then ``cal.setup``, ``cal.convex.fit_mlp``, ...
"""

from . import (arrangements, certificates, convex, exercises, losses, nonconvex, plots, toydata,
               validation, widgets)
from . import solvers  # torch solvers of the convex heads with certificates (issue 5)
from .cvxpy_solve import SolveError, installed_solvers, solve
from .runtime import Config, data_root, device, is_fast, pick, setup

__version__ = "0.1.0"

__all__ = ["arrangements", "certificates", "convex", "exercises", "losses", "nonconvex", "plots",
           "toydata", "validation", "widgets", "solvers",
           "SolveError", "installed_solvers", "solve", "Config", "data_root", "device",
           "is_fast", "pick", "setup", "__version__"]
