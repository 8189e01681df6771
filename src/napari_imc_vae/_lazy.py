"""Packages whose names are imported on first use, so that importing the package loads nothing heavy."""

from __future__ import annotations

import sys
from importlib import import_module


def lazy_names(package: str, exports: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``, resolving ``exports`` (name → submodule) on first use.

    A name, not a submodule: submodules are found by the import system as usual.
    """

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
