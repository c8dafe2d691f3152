"""Not a benchmark itself: what every benchmark prints first and last, the machine, its load and
the package versions (the timings depend on them).  Imported by the scripts of this folder (their
folder is on ``sys.path`` when they run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os
import platform

PACKAGES = ("numpy", "scipy", "cvxpy", "clarabel", "torch")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or 'n/a' where the system has none (Windows)."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def print_machine(packages=PACKAGES) -> None:
    """Print the platform, CPU count, Python version, load at start and the versions of ``packages``."""
    import cvxattn_lib as cal

    v = cal.runtime.versions()
    print(f"machine : {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs "
          f"(python {platform.python_version()}); load {load_average()} (1, 5, 15 min) at start")
    print("packages: " + ", ".join(f"{k} {v.get(k)}" for k in packages))
