"""Package namespaces whose public names are imported on first use (PEP 562 module ``__getattr__``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of ``package``, whose public names live in its submodules.

    Call it in the package's ``__init__``: ``__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)``.
    A name is imported from its submodule the first time it is asked for, then kept in the package's namespace.

    Args:
        package: The package's ``__name__``.
        exports: Submodule, relative to ``package`` (e.g. ``"boxes"``) → the public names it defines.
    """
    namespace = sys.modules[package].__dict__
    module_of = {name: module_name for module_name, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module_name = module_of.get(name)
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
        return sorted(set(namespace) | set(module_of))

    return __getattr__, __dir__, list(module_of)
