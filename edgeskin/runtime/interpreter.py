"""The one module that touches TFLite interpreters.

It picks an interpreter package (``ai_edge_litert``, else ``tflite_runtime``, else ``tensorflow.lite``),
knows about delegates (the Coral Edge TPU), and owns quantization: every conversion between float
values and a tensor's integers goes through :func:`quantize` and :func:`dequantize`, using the tensor's
own scale and zero point.

Nothing here imports TensorFlow unless neither of the light interpreter packages is installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeskin.errors import ConfigError, DelegateError, InterpreterNotFoundError, ModelError

logger = logging.getLogger(__name__)

Delegate = Literal["cpu", "edgetpu", "auto"]
DELEGATES: tuple[str, ...] = ("cpu", "edgetpu", "auto")

TFLITE_IDENTIFIER = b"TFL3"
EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"
EDGETPU_FIX = (
    "install the Edge TPU runtime (Linux: 'sudo apt-get install libedgetpu1-std' from Coral's apt repository "
    "https://coral.ai/software/#debian-packages), plug in the Coral device, and use an '_edgetpu.tflite' model "
    "compiled with edgetpu_compiler; or pass --delegate cpu (or auto to fall back to the CPU)"
)

_auto_fallback_lock = threading.Lock()
_stderr_lock = threading.Lock()  # one fd-2 redirection at a time
_auto_fallback_warned = False


# --------------------------------------------------------------------------------------------------
# Choosing the interpreter package
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterpreterBackend:
    """An interpreter package: its name, its ``Interpreter`` class and its ``load_delegate`` function."""

    name: str
    Interpreter: Any
    load_delegate: Any


def _backend_from(module_name: str) -> InterpreterBackend:
    if module_name == "tensorflow.lite":
        tf = importlib.import_module("tensorflow")
        return InterpreterBackend("tensorflow.lite", tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    module = importlib.import_module(module_name)
    return InterpreterBackend(module_name, module.Interpreter, module.load_delegate)


@functools.lru_cache(maxsize=1)
def interpreter_backend() -> InterpreterBackend:
    """Return the first interpreter package that imports, in order of preference.

    ``ai_edge_litert`` (the current light runtime), then ``tflite_runtime`` (its predecessor, still the
    one on older Raspberry Pi OS images), then ``tensorflow.lite``. The answer is cached; tests reset it
    with ``interpreter_backend.cache_clear()``.

    Raises:
        InterpreterNotFoundError: none of them is installed.
    """
    failures = []
    for module_name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"):
        try:
            backend = _backend_from(module_name)
        except ImportError as exc:
            failures.append(f"{module_name} ({exc})")
            continue
        logger.debug("TFLite interpreter from %s", backend.name)
        return backend
    raise InterpreterNotFoundError(
        "no TFLite interpreter is installed (tried " + ", ".join(failures) + "): pip install ai-edge-litert"
    )


# --------------------------------------------------------------------------------------------------
# Model files and delegates
# --------------------------------------------------------------------------------------------------


def check_delegate(delegate: object, what: str = "delegate") -> str:
    """``delegate`` when it is one of :data:`DELEGATES`, else :class:`ConfigError` (every option checks here)."""
    if delegate not in DELEGATES:
        raise ConfigError(f"{what} must be one of {', '.join(DELEGATES)}; got {delegate!r}")
    return str(delegate)


def check_threads(num_threads: object, what: str = "num_threads") -> int | None:
    """``num_threads`` when it is a positive integer or None, else :class:`ConfigError`."""
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ConfigError(f"{what} must be a positive integer or None; got {num_threads!r}")
    return num_threads


def check_model_file(model_path: str | Path) -> Path:
    """Check that ``model_path`` is an existing file that starts like a TFLite flatbuffer.

    The flatbuffer file identifier ``TFL3`` sits at bytes 4:8; checking it first turns "a JPEG renamed
    .tflite" into a one-line error instead of an interpreter crash.

    Raises:
        ModelError: the file is missing, not a file, or not a TFLite flatbuffer.
    """
    path = Path(model_path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(
            f"{path}: not a TFLite flatbuffer (expected the identifier 'TFL3' at bytes 4-8, got {head[4:8]!r})"
        )
    return path


def edgetpu_library_name(system: str | None = None) -> str:
    """The Edge TPU runtime library's file name on this (or the given) operating system."""
    system = system or platform.system()
    return {"Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}.get(system, "libedgetpu.so.1")


def _library_loadable(name: str) -> bool:
    # Probing with ctypes first keeps the failure path quiet: load_delegate on a missing library leaves a
    # half-built Delegate whose __del__ prints an ignored exception.
    import ctypes

    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def load_edgetpu_delegate(backend: InterpreterBackend | None = None) -> Any:
    """Load the Edge TPU delegate.

    Raises:
        DelegateError: the Edge TPU runtime library or the device is not available; the message names
            the fix.
    """
    backend = backend or interpreter_backend()
    library = edgetpu_library_name()
    if not _library_loadable(library):
        raise DelegateError(f"the Edge TPU delegate was requested but {library} is not installed: {EDGETPU_FIX}")
    try:
        return backend.load_delegate(library)
    except (ValueError, RuntimeError, OSError) as exc:
        detail = " ".join(str(exc).split())
        raise DelegateError(f"the Edge TPU delegate could not be loaded ({detail}): {EDGETPU_FIX}") from exc


def _warn_auto_fallback_once(reason: str) -> None:
    global _auto_fallback_warned
    with _auto_fallback_lock:
        if _auto_fallback_warned:
            logger.debug("delegate 'auto': Edge TPU unavailable, using the CPU")
            return
        _auto_fallback_warned = True
    logger.warning("delegate 'auto': Edge TPU unavailable, running on the CPU (%s)", reason)


def _reset_auto_fallback_warning() -> None:
    """Forget that the 'auto' fallback was logged (for tests)."""
    global _auto_fallback_warned
    with _auto_fallback_lock:
        _auto_fallback_warned = False


# The native runtime prints this once per process on stderr; it is noise in a one-line CLI error report.
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def _filter_native_stderr() -> Iterator[None]:
    """Hold back the native library's informational stderr lines while an interpreter is built.

    Other lines written to stderr meanwhile (real warnings, errors) are passed on afterwards.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a real file (e.g. captured in tests)
        yield
        return
    sys.stderr.flush()
    with _stderr_lock, tempfile.TemporaryFile() as held:
        saved = os.dup(fd)
        os.dup2(held.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if line.strip() not in _NATIVE_NOISE)
            if kept:
                os.write(fd, kept.encode("utf-8"))


def _open_interpreter(
    model_path: str | Path,
    *,
    num_threads: int | None = None,
    delegate: str = "cpu",
    backend: InterpreterBackend | None = None,
    default_delegates: bool = True,
) -> tuple[Any, str]:
    """Create and allocate an interpreter; return it with the delegate actually used ("cpu"/"edgetpu")."""
    check_delegate(delegate)
    check_threads(num_threads)
    path = check_model_file(model_path)
    backend = backend or interpreter_backend()

    delegates = []
    used = "cpu"
    if delegate in ("edgetpu", "auto"):
        try:
            delegates.append(load_edgetpu_delegate(backend))
            used = "edgetpu"
        except DelegateError as exc:
            if delegate == "edgetpu":
                raise
            _warn_auto_fallback_once(str(exc).split(":")[0])

    kwargs: dict[str, Any] = {"model_path": str(path)}
    if num_threads is not None:
        kwargs["num_threads"] = num_threads
    if delegates:
        kwargs["experimental_delegates"] = delegates
    resolver = None if default_delegates else _builtin_ops_without_default_delegates(backend)
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver
    try:
        with _filter_native_stderr():
            interpreter = backend.Interpreter(**kwargs)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())
        if "edgetpu-custom-op" in detail:
            raise ModelError(
                f"{path}: this model is compiled for the Edge TPU and cannot run on the CPU ({detail}); "
                f"use --delegate edgetpu, or the model's CPU version (without '_edgetpu')"
            ) from exc
        raise ModelError(
            f"{path}: the interpreter cannot load this model; the file may be truncated or corrupt ({detail})"
        ) from exc
    if used == "edgetpu" and not _has_edgetpu_op(path):
        logger.warning(
            "%s has no Edge TPU operations: everything runs on the CPU; compile it with edgetpu_compiler", path
        )
    return interpreter, used


def _builtin_ops_without_default_delegates(backend: InterpreterBackend) -> Any:
    """The op resolver that keeps XNNPACK from taking over the graph (None when the package has none)."""
    module = importlib.import_module("tensorflow").lite.experimental if backend.name == "tensorflow.lite" else None
    module = module or importlib.import_module(backend.name)
    resolver = getattr(module, "OpResolverType", None)
    return getattr(resolver, "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)


def _has_edgetpu_op(path: Path) -> bool:
    return EDGETPU_CUSTOM_OP in path.read_bytes()


def make_interpreter(
    model_path: str | Path,
    *,
    num_threads: int | None = None,
    delegate: Delegate = "cpu",
    default_delegates: bool = True,
) -> Any:
    """Create an allocated TFLite interpreter for ``model_path``.

    Args:
        model_path: The ``.tflite`` file.
        num_threads: CPU threads for the kernels (None: the interpreter's default).
        delegate: ``"cpu"``; ``"edgetpu"`` (the Coral Edge TPU, an error if absent); or ``"auto"`` (the
            Edge TPU when present, else the CPU, logged once per process).
        default_delegates: False: the builtin kernels alone, without the default XNNPACK delegate, so the
            graph's own operators stay listed (an operator report); where the package cannot say so, its default.

    Raises:
        ModelError: missing file, not a TFLite flatbuffer, truncated or corrupt.
        DelegateError: ``"edgetpu"`` was asked but is not available.
        InterpreterNotFoundError: no interpreter package is installed.
    """
    interpreter, _ = _open_interpreter(
        model_path, num_threads=num_threads, delegate=delegate, default_delegates=default_delegates
    )
    return interpreter


# --------------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------------


def _per_axis(values: Any, ndim: int, axis: int) -> np.ndarray | float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 1:
        return float(arr.reshape(()))
    shape = [1] * ndim
    shape[axis] = arr.size
    return arr.reshape(shape)


def quantize(
    x: Any,
    scale: float | Sequence[float] | np.ndarray,
    zero_point: int | Sequence[int] | np.ndarray,
    dtype: Any,
    *,
    axis: int = -1,
) -> np.ndarray:
    """Quantize float values: ``q = clip(round(x / scale) + zero_point)`` in ``dtype``'s range.

    Rounding is half away from zero, as TFLite's own QUANTIZE kernel does.

    Args:
        x: Float values.
        scale: One scale (per tensor) or one per slice along ``axis`` (per axis).
        zero_point: Matching zero point(s).
        dtype: Integer numpy dtype of the tensor (int8, uint8, int16, int32).
        axis: The quantized dimension for per-axis parameters.

    Returns:
        Array of ``dtype``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ConfigError(f"quantize needs an integer dtype; got {dtype}")
    values = np.asarray(x, dtype=np.float64)
    s = _per_axis(scale, values.ndim, axis)
    zp = _per_axis(zero_point, values.ndim, axis)
    if np.any(np.asarray(s) <= 0):
        raise ConfigError(f"quantization scale must be positive; got {scale}")
    scaled = values / s
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    info = np.iinfo(dtype)
    return np.clip(rounded + zp, info.min, info.max).astype(dtype)


def dequantize(
    q: Any, scale: float | Sequence[float] | np.ndarray, zero_point: int | Sequence[int] | np.ndarray, *, axis: int = -1
) -> np.ndarray:
    """Dequantize integers: ``x = (q - zero_point) * scale`` as float32.

    The integers are widened to int32 before the zero point is subtracted, so ``uint8 - 128`` cannot wrap.
    """
    values = np.asarray(q)
    widened = values.astype(np.int32) if values.dtype.kind in "iu" else values.astype(np.float64)
    if isinstance(zero_point, (int, np.integer)) and isinstance(scale, (int, float, np.integer, np.floating)):
        # One scale and zero point (a per-tensor model output, every frame): the same arithmetic, no set-up.
        return ((widened - np.int32(zero_point)) * float(scale)).astype(np.float32)
    zp = np.asarray(zero_point, dtype=np.int32)
    if zp.size > 1:
        shape = [1] * values.ndim
        shape[axis] = zp.size
        zp = zp.reshape(shape)
    else:
        zp = zp.reshape(())
    s = _per_axis(scale, values.ndim, axis)
    return ((widened - zp) * s).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# TFLiteModel
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor of a model.

    Attributes:
        name: The signature name when the model has a signature def, else the tensor name.
        shape: The tensor shape, batch included.
        dtype: numpy dtype of the tensor.
        scale: Per-tensor scale (0.0 when the tensor is not quantized; the first scale if per-axis).
        zero_point: Per-tensor zero point.
        index: Tensor index in the interpreter.
        tensor_name: The tensor's own name in the graph.
        scales: All scales (more than one for per-axis quantization).
        zero_points: All zero points.
        quantized_dimension: The axis of per-axis quantization.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int
    index: int
    tensor_name: str = ""
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0

    @classmethod
    def from_details(cls, details: Mapping[str, Any], name: str | None = None) -> TensorInfo:
        params = details.get("quantization_parameters") or {}
        scale, zero_point = details.get("quantization", (0.0, 0)) or (0.0, 0)
        scales = tuple(float(s) for s in np.asarray(params.get("scales", []), dtype=np.float64).reshape(-1))
        zero_points = tuple(int(z) for z in np.asarray(params.get("zero_points", []), dtype=np.int64).reshape(-1))
        if not scales and scale:
            scales, zero_points = (float(scale),), (int(zero_point),)
        if scales and not scale:
            scale, zero_point = scales[0], zero_points[0] if zero_points else 0
        return cls(
            name=name or str(details["name"]),
            shape=tuple(int(d) for d in np.asarray(details["shape"]).reshape(-1)),
            dtype=np.dtype(details["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
            index=int(details["index"]),
            tensor_name=str(details["name"]),
            scales=scales,
            zero_points=zero_points,
            quantized_dimension=int(params.get("quantized_dimension", 0) or 0),
        )

    @functools.cached_property
    def is_quantized(self) -> bool:
        return self.dtype.kind in "iu" and bool(self.scales) and all(s > 0 for s in self.scales)

    @functools.cached_property
    def _per_tensor(self) -> tuple[int, float] | None:
        """``(zero_point, scale)`` of a tensor quantized with one scale, else None (computed once: the runtime
        dequantizes outputs every frame, and the general per-axis path costs several numpy calls)."""
        if self.is_quantized and len(self.scales) == 1 and len(self.zero_points) == 1:
            return self.zero_points[0], self.scales[0]
        return None

    def quantize(self, x: Any) -> np.ndarray:
        """Float values → this tensor's integers (or float32 for a float tensor)."""
        if not self.is_quantized:
            return np.asarray(x, dtype=self.dtype)
        return quantize(x, self.scales, self.zero_points, self.dtype, axis=self.quantized_dimension)

    def dequantize(self, q: Any) -> np.ndarray:
        """This tensor's values → float32."""
        if not self.is_quantized:
            return np.asarray(q, dtype=np.float32)
        if self._per_tensor is not None:  # scalars: dequantize() skips its per-axis set-up
            zero_point, scale = self._per_tensor
            return dequantize(q, scale, zero_point)
        return dequantize(q, self.scales, self.zero_points, axis=self.quantized_dimension)

    def dequantize_mean(self, sums: np.ndarray, count: int, dtype: Any = np.float64) -> np.ndarray:
        """The mean of ``count`` outputs of this tensor, from their sum as stored.

        For a quantized tensor ``sums`` holds the integers summed in int32 (exact), so the mean
        ``(sums - count * zero_point) * scale / count`` is dequantized once instead of once per term,
        in ``dtype`` arithmetic (two passes).
        """
        values = np.asarray(sums)
        if not self.is_quantized:
            return (values / count).astype(dtype, copy=False)
        if self._per_tensor is not None:
            zero_point, scale = self._per_tensor
            zero_points, scales = float(zero_point) * count, scale / count
        else:
            zero_points = np.multiply(_per_axis(self.zero_points, values.ndim, self.quantized_dimension), count)
            scales = np.divide(_per_axis(self.scales, values.ndim, self.quantized_dimension), count)
        out = np.subtract(values, np.asarray(zero_points, dtype), dtype=dtype)
        out *= np.asarray(scales, dtype)
        return out

    def describe(self) -> str:
        quant = ""
        if self.is_quantized:
            if len(self.scales) > 1:
                quant = f" per-axis({len(self.scales)} scales, axis {self.quantized_dimension})"
            else:
                quant = f" scale={self.scale:.6g} zero_point={self.zero_point}"
        alias = f" (tensor '{self.tensor_name}')" if self.tensor_name and self.tensor_name != self.name else ""
        return f"{self.name}{alias}: {list(self.shape)} {self.dtype.name}{quant}"


class InputEncoder:
    """Model-input-sized RGB uint8 pixels → the input tensor's values, for one tensor and normalisation.

    Normalisation is ``(pixel - mean) / std`` followed by the tensor's own quantization. When that is
    exactly ``q = pixel + b`` for every pixel in [0, 255] (edgeskin's models: the scaling is in the graph,
    and converters emit scales such as 0.9999987), the float maths is skipped.
    """

    def __init__(self, info: TensorInfo, mean: Sequence[float], std: Sequence[float], color_order: str = "RGB") -> None:
        self.info = info
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.bgr = color_order == "BGR"
        self.integer_shift = self._integer_shift()

    def _integer_shift(self) -> int | None:
        info = self.info
        if not info.is_quantized or len(info.scales) != 1:
            return None
        gain = 1.0 / (self.std * info.scale)
        offset = info.zero_point - self.mean * gain
        # Exact when |gain - 1| * 255 stays far below half a quantization step.
        rounded = np.rint(offset)
        if (
            np.all(np.abs(gain - 1.0) * 255.0 < 0.01)
            and np.allclose(offset, rounded, atol=1e-3)
            and np.all(rounded == rounded[0])
        ):
            return int(rounded[0])
        return None

    def encode(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB at the model's input size → a (1, H, W, 3) array of the tensor's dtype.

        With ``out`` (an (H, W, 3) array of the tensor's dtype, e.g. one slot of a batch tensor) the values
        are written there and ``out[np.newaxis]`` is returned.
        """
        if self.bgr:
            pixels = pixels[..., ::-1]
        if self.integer_shift == -128 and self.info.dtype == np.int8:
            # pixel - 128 as int8 is the pixel's byte with its top bit flipped: one pass, no widening.
            if out is not None:
                np.bitwise_xor(pixels, np.uint8(0x80), out=out.view(np.uint8))
                return out[np.newaxis]
            return np.bitwise_xor(pixels, np.uint8(0x80)).view(np.int8)[np.newaxis]
        if self.integer_shift is not None:
            limits = np.iinfo(self.info.dtype)
            shifted = pixels.astype(np.int16) + self.integer_shift
            encoded = np.clip(shifted, limits.min, limits.max).astype(self.info.dtype)[np.newaxis]
        else:
            normalised = (pixels.astype(np.float32) - self.mean) / self.std
            encoded = self.info.quantize(normalised[np.newaxis])
        if out is None:
            return encoded
        np.copyto(out, encoded[0])
        return out[np.newaxis]


def _names_main_graph(
    interpreter: Any, runner: Any, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo], signatures: int
) -> bool:
    """Whether the only signature of a model maps onto its main graph's input and output tensors."""
    if signatures != 1 or getattr(runner, "_subgraph_index", 0) != 0:
        return False
    try:
        graph_inputs = {int(d["index"]) for d in interpreter.get_input_details()}
        graph_outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    except (AttributeError, KeyError, TypeError, ValueError):
        return False
    return {i.index for i in inputs} == graph_inputs and {o.index for o in outputs} == graph_outputs


class TFLiteModel:
    """One TFLite interpreter with named, dequantized inputs and outputs.

    Tensors of a model with a signature def are named by the signature (those are the names a spec's
    ``outputs`` refer to); other models use graph tensor names. A model with one signature over its main
    graph runs on the graph's tensors directly; one with several signatures runs through its signature
    runner.

    Example:
        >>> with TFLiteModel.from_file("model.tflite", num_threads=2) as model:
        ...     outputs = model.run(x)          # dict name -> float32 array
        ...     print(model.invoke_ms)
    """

    # Batched siblings kept open per model (see :meth:`batched`); the oldest is closed beyond this.
    MAX_BATCHED = 4

    def __init__(
        self,
        interpreter: Any,
        *,
        path: str | Path | None = None,
        delegate: str = "cpu",
        num_threads: int | None = None,
    ) -> None:
        self._interpreter = interpreter
        self.path = Path(path) if path is not None else None
        self.delegate = delegate
        self.num_threads = num_threads
        self.invoke_ms = 0.0
        self._runner = None
        self._pending: dict[str, np.ndarray] = {}
        self._batched: dict[int, TFLiteModel] = {}
        signatures = {}
        if hasattr(interpreter, "get_signature_list"):
            signatures = interpreter.get_signature_list() or {}
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            self.signature_key: str | None = key
            runner = interpreter.get_signature_runner(key)
            self.inputs = tuple(TensorInfo.from_details(d, n) for n, d in runner.get_input_details().items())
            self.outputs = tuple(TensorInfo.from_details(d, n) for n, d in runner.get_output_details().items())
            # A signature that only names the main graph's own inputs and outputs (every single-signature
            # export) runs on those tensors directly, like a model without one: the runner would resize,
            # reallocate and copy in and out on every call, and while it lives the interpreter's memory
            # cannot be written in place (run_filled).
            if not _names_main_graph(interpreter, runner, self.inputs, self.outputs, len(signatures)):
                self._runner = runner
            del runner
        else:
            self.signature_key = None
            self.inputs = tuple(TensorInfo.from_details(d) for d in interpreter.get_input_details())
            self.outputs = tuple(TensorInfo.from_details(d) for d in interpreter.get_output_details())

    @classmethod
    def from_file(
        cls, model_path: str | Path, *, num_threads: int | None = None, delegate: Delegate = "cpu"
    ) -> TFLiteModel:
        """Open ``model_path`` (see :func:`make_interpreter` for the arguments and errors)."""
        interpreter, used = _open_interpreter(model_path, num_threads=num_threads, delegate=delegate)
        return cls(interpreter, path=model_path, delegate=used, num_threads=num_threads)

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> TFLiteModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the interpreter (and its delegate), and those of its batched siblings."""
        for sibling in self._batched.values():
            sibling.close()
        self._batched.clear()
        self._runner = None
        self._interpreter = None

    @property
    def interpreter(self) -> Any:
        if self._interpreter is None:
            raise ModelError(f"model {self.path or ''} is closed".replace("  ", " "))
        return self._interpreter

    # -- tensors -----------------------------------------------------------------------------------
    @property
    def input(self) -> TensorInfo:
        """The only input (most models have one)."""
        return self.inputs[0]

    def output(self, name: str) -> TensorInfo:
        """The output tensor called ``name``."""
        for info in self.outputs:
            if info.name == name:
                return info
        raise ModelError(f"model has no output named {name!r}; its outputs are {[o.name for o in self.outputs]}")

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def _prepare(self, info: TensorInfo, x: Any) -> np.ndarray:
        arr = np.asarray(x)
        if arr.ndim == len(info.shape) - 1:
            arr = arr[np.newaxis]
        if tuple(arr.shape) != info.shape:
            raise ConfigError(f"input '{info.name}': expected shape {info.shape}, got {tuple(arr.shape)}")
        if arr.dtype == info.dtype:
            return np.ascontiguousarray(arr)  # already in the tensor's own representation
        if info.dtype.kind == "f":
            return np.ascontiguousarray(arr, dtype=info.dtype)
        if not info.is_quantized:
            raise ConfigError(
                f"input '{info.name}' is {info.dtype.name} without quantization; give {info.dtype.name} values"
            )
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"input '{info.name}' holds NaN or infinite values")
        return np.ascontiguousarray(info.quantize(arr))

    def set_input(self, x: Any, name: str | None = None) -> np.ndarray:
        """Set one input from float values (quantized with the tensor's own parameters).

        An array already of the tensor's dtype is taken as the tensor's own integers, unchanged. A
        missing batch axis is added. Returns the array that was set.
        """
        info = self.inputs[0] if name is None else next((i for i in self.inputs if i.name == name), None)
        if info is None:
            raise ConfigError(f"model has no input named {name!r}; its inputs are {[i.name for i in self.inputs]}")
        prepared = self._prepare(info, x)
        if self._runner is None:
            self.interpreter.set_tensor(info.index, prepared)
        else:
            self._pending[info.name] = prepared  # the signature runner takes all inputs in one call
        return prepared

    def run(
        self, x: Any | Mapping[str, Any], *, outputs: Sequence[str] | None = None, raw: bool = False
    ) -> dict[str, np.ndarray]:
        """Run the model once.

        Args:
            x: The input (one array for a single-input model) or a mapping input name → array, as float
                values or already in the tensor's dtype.
            outputs: Only these outputs (names), e.g. to skip a large feature map; None: all of them.
            raw: Return the tensors as stored (int8/uint8 for a quantized model) instead of dequantized
                float32; ``output(name).dequantize`` converts them later (once, after summing, say).

        Returns:
            Dict output name → array, in the model's output order.
        """
        feeds = x if isinstance(x, Mapping) else {self.inputs[0].name: x}
        if len(feeds) != len(self.inputs):
            raise ConfigError(
                f"model takes {len(self.inputs)} inputs {[i.name for i in self.inputs]}; got {len(feeds)}"
            )
        for name, value in feeds.items():
            self.set_input(value, name)
        wanted = self.outputs if outputs is None else tuple(self.output(name) for name in outputs)
        if self._runner is not None:
            pending, self._pending = self._pending, {}
            start = time.perf_counter()
            tensors = self._runner(**pending)
            self.invoke_ms = (time.perf_counter() - start) * 1000.0
            fetched = {info.name: tensors[info.name] for info in wanted}
        else:
            interpreter = self.interpreter
            start = time.perf_counter()
            interpreter.invoke()
            self.invoke_ms = (time.perf_counter() - start) * 1000.0
            fetched = {info.name: interpreter.get_tensor(info.index) for info in wanted}
        if raw:
            return fetched
        return {info.name: info.dequantize(fetched[info.name]) for info in wanted}

    # -- batches -----------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """The input's batch dimension (1 for nearly every ``.tflite``)."""
        shape = self.input.shape
        return int(shape[0]) if shape else 1

    def batched(self, batch: int) -> TFLiteModel:
        """This model taking ``batch`` inputs in one invoke.

        A second interpreter of the same file whose input batch dimension is resized to ``batch``
        (``resize_tensor_input`` + ``allocate_tensors`` once per size); it is kept for the next call of the
        same size (at most :attr:`MAX_BATCHED` sizes) and closed with this model. The model itself is
        returned when it already has that batch size. The sibling runs on the graph tensors directly
        (no signature runner), with the same tensor names as this model.

        Raises:
            ModelError: the model cannot take a batch: it was not opened from a file, has several inputs,
                runs on the Edge TPU (compiled with fixed shapes), or its graph fixes the batch dimension
                (the resize fails, or an output does not follow the batch).
        """
        if not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch: expected a positive integer, got {batch!r}")
        if batch == self.batch_size:
            return self
        cached = self._batched.get(batch)
        if cached is not None:
            return cached
        name = self.path.name if self.path is not None else "the model"
        if self.path is None:
            raise ModelError(f"{name}: cannot open a batched copy of an interpreter that was not opened from a file")
        if len(self.inputs) != 1:
            raise ModelError(f"{name}: batching needs a single-input model, this one has {len(self.inputs)} inputs")
        if self.delegate == "edgetpu":
            raise ModelError(f"{name}: Edge TPU models are compiled with fixed tensor shapes (batch {self.batch_size})")
        sibling = self._resized(
            (batch, *self.input.shape[1:]), f"its input batch dimension cannot be resized to {batch}"
        )
        for out, mine in zip(sibling.outputs, self.outputs, strict=True):
            expected = (batch, *mine.shape[1:])
            if out.shape != expected:
                sibling.close()
                raise ModelError(
                    f"{name}: output '{out.name}' has shape {list(out.shape)} for an input batch of {batch} "
                    f"(expected {list(expected)}): the graph fixes its batch dimension"
                )
        if len(self._batched) >= self.MAX_BATCHED:
            self._batched.pop(next(iter(self._batched))).close()
        self._batched[batch] = sibling
        logger.debug("%s: opened a batch-%d interpreter", name, batch)
        return sibling

    def with_input_shape(self, shape: Sequence[int]) -> TFLiteModel:
        """A second interpreter of the same file whose (single) input has ``shape``, e.g. another square size for
        a classifier that ends in global average pooling; the outputs take the shapes the graph gives them.

        Unlike :meth:`batched` it is not cached: the caller closes it.

        Raises:
            ModelError: the model was not opened from a file, has several inputs, runs on the Edge TPU, or its
                graph cannot take that shape.
        """
        name = self.path.name if self.path is not None else "the model"
        if self.path is None or len(self.inputs) != 1 or self.delegate == "edgetpu":
            raise ModelError(f"{name}: only a single-input CPU model opened from a file can take another input shape")
        return self._resized(tuple(int(v) for v in shape), f"its input cannot be resized to {list(shape)}")

    def _resized(self, shape: tuple[int, ...], failure: str) -> TFLiteModel:
        """A sibling on the graph tensors (no signature runner) with the input resized to ``shape``; ModelError
        ``failure`` when the graph refuses it."""
        interpreter, _ = _open_interpreter(self.path, num_threads=self.num_threads, delegate=self.delegate)
        info = self.input
        try:
            interpreter.resize_tensor_input(info.index, list(shape), strict=False)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            detail = " ".join(str(exc).split())
            raise ModelError(f"{self.path.name}: {failure} ({detail})") from exc
        shapes = {int(d["index"]): tuple(int(v) for v in d["shape"]) for d in interpreter.get_output_details()}
        sibling = TFLiteModel.__new__(TFLiteModel)
        sibling.__dict__.update(
            _interpreter=interpreter,
            path=self.path,
            delegate=self.delegate,
            num_threads=self.num_threads,
            invoke_ms=0.0,
            _runner=None,
            _pending={},
            _batched={},
            signature_key=self.signature_key,
            inputs=(dataclasses.replace(info, shape=tuple(shape)),),
            outputs=tuple(dataclasses.replace(out, shape=shapes.get(out.index, ())) for out in self.outputs),
        )
        return sibling

    def run_filled(self, fill: Callable[[np.ndarray], object], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run once with the (single) input written in place by ``fill(buffer)``; raw outputs.

        ``buffer`` is the input tensor's own memory (its shape and dtype, batch included) when the model
        runs on its graph tensors, so the input is never copied; ``fill`` must not keep it. Returns the
        named outputs as stored (int8/uint8 for a quantized model), as copies.
        """
        info = self.inputs[0]
        wanted = tuple(self.output(name) for name in outputs)
        if self._runner is not None:
            buffer = np.empty(info.shape, info.dtype)
            fill(buffer)
            return self.run(buffer, outputs=outputs, raw=True)
        interpreter = self.interpreter
        buffer = interpreter.tensor(info.index)()
        try:
            fill(buffer)
        finally:
            del buffer  # the interpreter refuses to run while a view of its memory is alive
        start = time.perf_counter()
        interpreter.invoke()
        self.invoke_ms = (time.perf_counter() - start) * 1000.0
        return {out.name: interpreter.get_tensor(out.index) for out in wanted}

    # -- introspection -----------------------------------------------------------------------------
    def op_names(self, *, include_delegate_nodes: bool = False) -> list[str]:
        """Names of the model's operations in graph order (empty if the interpreter cannot tell).

        Args:
            include_delegate_nodes: Also list the ``DELEGATE`` nodes that a delegate (XNNPACK on the
                CPU) adds when it takes over parts of the graph; the original operations stay listed.
        """
        get_ops = getattr(self.interpreter, "_get_ops_details", None)
        if get_ops is None:
            return []
        try:
            names = [str(op["op_name"]) for op in get_ops()]
        except (RuntimeError, ValueError, KeyError):
            return []
        return names if include_delegate_nodes else [name for name in names if name != "DELEGATE"]

    def op_counts(self) -> dict[str, int]:
        """Operation name → how many times it occurs, most frequent first."""
        return dict(Counter(self.op_names()).most_common())

    def __repr__(self) -> str:
        ins = ", ".join(i.describe() for i in self.inputs)
        outs = ", ".join(o.describe() for o in self.outputs)
        return f"TFLiteModel({self.path}, delegate={self.delegate}, inputs=[{ins}], outputs=[{outs}])"


__all__ = [
    "DELEGATES",
    "check_delegate",
    "check_threads",
    "EDGETPU_FIX",
    "InterpreterBackend",
    "TFLiteModel",
    "TensorInfo",
    "check_model_file",
    "dequantize",
    "edgetpu_library_name",
    "interpreter_backend",
    "load_edgetpu_delegate",
    "make_interpreter",
    "quantize",
]
