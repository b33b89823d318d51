"""Typed errors of edgeskin.

Every error says what was expected, what came, and what to do. The CLI prints ``str(error)`` as one
line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class EdgeskinError(Exception):
    """Base class of every error edgeskin raises on purpose."""


class ImageError(EdgeskinError, ValueError):
    """An image could not be read or is not usable (corrupt, empty, too small, too large, odd format)."""


class ImageTooSmallError(ImageError):
    """The image is smaller than the minimum size the pipeline can analyse."""


class ImageTooLargeError(ImageError):
    """The image header announces more pixels than allowed (decompression-bomb guard)."""


class ModelError(EdgeskinError):
    """A model file is missing, corrupt, of the wrong kind, or disagrees with its spec."""


class ChecksumMismatchError(ModelError):
    """The model file's SHA-256 differs from the one recorded in its spec."""


class SpecError(ModelError):
    """A model spec is missing fields, malformed, or inconsistent with the model's tensors."""


class NoDefaultModelError(ModelError):
    """The shipped default model is not installed."""


class DelegateError(EdgeskinError):
    """A hardware delegate (e.g. the Edge TPU) was requested but cannot be loaded."""


class InterpreterNotFoundError(EdgeskinError, ImportError):
    """None of ai_edge_litert, tflite_runtime or tensorflow.lite is installed."""


class MissingExtraError(EdgeskinError, ImportError):
    """An optional dependency is needed; the message names the pip extra that installs it."""


class CameraError(EdgeskinError):
    """A frame source could not be opened or stopped delivering frames."""


class ConfigError(EdgeskinError, ValueError):
    """A profile, option or combination of options is invalid."""


def check_fraction(value: float | None, name: str) -> None:
    """Raise ConfigError unless ``value`` is None or a number in [0, 1] (thresholds, probabilities)."""
    if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name}: expected a number in [0, 1] or None, got {value!r}")


def check_at_least(value: float, minimum: float, name: str, unit: str = "") -> None:
    """Raise ConfigError unless ``value`` is a number of at least ``minimum`` (sizes, counts, spreads)."""
    if not (isinstance(value, (int, float)) and value >= minimum):
        raise ConfigError(f"{name}: expected a number of at least {minimum}{unit}, got {value!r}")


def require(module: str, extra: str, purpose: str):
    """Import an optional module lazily, or raise MissingExtraError naming the install command.

    Args:
        module: Importable module name, e.g. ``"streamlit"``.
        extra: The edgeskin extra that installs it, e.g. ``"ui"``.
        purpose: What the caller needs it for, used in the message.

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised through callers
        raise MissingExtraError(
            f"{purpose} needs '{module}', which is not installed: pip install 'edgeskin[{extra}]'"
        ) from exc
