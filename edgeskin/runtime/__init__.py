"""The only part of edgeskin that touches a TFLite interpreter: interpreters, delegates, quantization,
and model specs. Names are imported on first use."""

from __future__ import annotations

from edgeskin._lazy import lazy_exports
from edgeskin.runtime._exports import EXPORTS as _EXPORTS

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
