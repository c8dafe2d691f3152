"""cvxattn: attention and token mixing through convex duality (Sahiner et al., ICML 2022).

Notebooks use ``import cvxattn_lib as cal`` and then ``cal.setup``, ``cal.convex.fit_mlp``, ...

Submodules are imported on first use (PEP 562 module ``__getattr__``), so ``import cvxattn_lib``
loads neither torch nor cvxpy: ``cal.convex`` imports cvxpy the first time it is touched,
``cal.solvers`` torch, and a command line such as ``python -m cvxattn_lib.cifar --help`` only
what it needs.
"""

from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.1.0"

#: public submodules (``cal.convex``, ...), imported on first access
SUBMODULES = ("arrangements", "certificates", "convex", "exercises", "losses", "nonconvex", "plots",
              "toydata", "validation", "widgets", "solvers")
#: public names defined in a submodule -> that submodule
ATTRIBUTES = {"SolveError": "cvxpy_solve", "installed_solvers": "cvxpy_solve", "solve": "cvxpy_solve",
              "Config": "runtime", "data_root": "runtime", "device": "runtime", "is_fast": "runtime",
              "pick": "runtime", "setup": "runtime"}

__all__ = [*SUBMODULES, *ATTRIBUTES, "__version__"]


__getattr__, __dir__ = lazy_attributes(__name__, globals(), ATTRIBUTES)
