"""Lazy submodules for a package's ``__init__`` (PEP 562): nothing heavy is imported until used."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable


def lazy_attributes(package: str, namespace: dict, attributes: dict[str, str],
                    submodules: tuple[str, ...] | None = None) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``, whose globals are ``namespace``.

    A name in ``attributes`` (name -> submodule) is read from that submodule on first access; any
    other name is imported as a submodule when it is in ``submodules`` (or, with ``None``, when it is
    public and such a submodule exists).  What is loaded is kept in ``namespace``, so each import
    happens once.  ``__dir__`` lists the loaded names and ``namespace["__all__"]``.
    """

    def __getattr__(name: str):
        if name in attributes:
            value = getattr(importlib.import_module(f".{attributes[name]}", package), name)
        elif (name in submodules if submodules is not None else
              not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None):
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
