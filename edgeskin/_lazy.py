"""Package namespaces whose public names are imported on first use (PEP 562 module ``__getattr__``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose public names are defined in its submodules.

    Call it in the package's ``__init__``: ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)``. A name
    is imported from its submodule the first time it is asked for, then kept in the package's namespace.

    Args:
        package: The package's ``__name__``.
        exports: Public name → the submodule that defines it, relative to ``package`` (e.g. ``"boxes"``).
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(f"{package}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{module_name}":
                raise
            raise AttributeError(f"{name} is not available: {package}.{module_name} is not installed") from exc
        value = getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
