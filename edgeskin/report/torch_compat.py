"""Make ``import torchvision`` work on a CPU-only torch when torchvision's compiled ops cannot load.

Why: the torchvision wheel on PyPI is a CUDA build. With the CPU build of torch its compiled extension
(``torchvision/_C_stable.so``) fails to load, so the operator ``torchvision::nms`` is never defined and
``import torchvision`` dies in ``torchvision/_meta_registrations.py`` with
``RuntimeError: operator torchvision::nms does not exist``. ultralytics only needs NMS from torchvision
(and reads its version metadata), but any code that imports torchvision breaks.

:func:`ensure_torchvision_cpu_ops` fixes that honestly, without touching installed files:

1. If the compiled extension loads (or the ops are already defined), it does nothing.
2. Otherwise it defines the schemas ``torchvision::nms(Tensor dets, Tensor scores, float iou_threshold)
   -> Tensor`` and ``torchvision::qnms(...)`` with :mod:`torch.library` and registers a CPU kernel written
   in pure torch: the greedy NMS of torchvision's C++ CPU kernel (stable sort by descending score, IoU in
   the boxes' dtype, suppress when IoU > threshold, indices returned as int64 in descending score order).
   torchvision registers its own fake/Meta kernels for these two ops when it is imported.
3. It imports torchvision and makes ``torchvision.extension._has_ops()`` report True, so
   ``torchvision.ops.nms`` / ``batched_nms`` (and ultralytics' NMS, which uses torchvision when it is
   imported) run on the kernel above.

Provided: ``torchvision.ops.nms``, ``torchvision.ops.batched_nms`` and quantized-box NMS (``qnms``), on
CPU tensors, plus everything in torchvision written in Python (transforms, models, box utilities).
NOT provided: every other compiled op (``roi_align``, ``roi_pool``, ``ps_roi_align``, ``ps_roi_pool``,
``deform_conv2d``, the image/video decoders) and CUDA kernels. Calling one of those still fails with
torch's "no such operator" error. Nothing in edgeskin's training or conversion uses them.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import torch

_LOG = logging.getLogger(__name__)
# Keeps the torch.library registrations alive for the life of the process.
_LIBRARY: torch.library.Library | None = None
_STATE: str | None = None  # "native" | "pure_torch"


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS with the semantics of torchvision's CPU kernel, in pure torch.

    Args:
        boxes: (N, 4) boxes ``x1, y1, x2, y2``.
        scores: (N,) scores.
        iou_threshold: A box is dropped when its IoU with a kept, higher-scoring box is > this value.

    Returns:
        int64 indices of the kept boxes, highest score first.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    if boxes.dim() != 2 or boxes.size(1) != 4:
        raise RuntimeError(f"boxes should be a (N, 4) tensor, got shape {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.size(0) != boxes.size(0):
        raise RuntimeError(f"scores should be a ({boxes.size(0)},) tensor, got shape {tuple(scores.shape)}")
    order = torch.sort(scores, stable=True, descending=True).indices
    sorted_boxes = boxes[order]
    x1, y1, x2, y2 = sorted_boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    remaining = torch.arange(order.numel(), device=boxes.device)
    keep: list[torch.Tensor] = []
    while remaining.numel() > 0:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        if rest.numel() == 0:
            break
        # Same arithmetic order as torchvision's nms_kernel.cpp, so float32 results are identical.
        xx1 = torch.maximum(x1[i], x1[rest])
        yy1 = torch.maximum(y1[i], y1[rest])
        xx2 = torch.minimum(x2[i], x2[rest])
        yy2 = torch.minimum(y2[i], y2[rest])
        w = torch.clamp(xx2 - xx1, min=0)
        h = torch.clamp(yy2 - yy1, min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        # The C++ kernel compares against a double threshold.
        remaining = rest[~(iou.double() > float(iou_threshold))]
    return order[torch.stack(keep)].to(torch.long)


def _qnms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    # torchvision passes the integer representation of quantized boxes/scores; widen before subtracting.
    return greedy_nms(dets.to(torch.float64), scores.to(torch.float64), iou_threshold)


def _extension_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for candidate in sorted(Path(folder).glob("_C_stable*.so")) + sorted(Path(folder).glob("_C.*")):
            return candidate
    return None


def _op_defined(name: str) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"torchvision::{name}", "CPU") or bool(
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        )
    except RuntimeError:
        return False


def ensure_torchvision_cpu_ops() -> str:
    """Make ``import torchvision`` and ``torchvision.ops.nms`` work on CPU; idempotent.

    Returns:
        ``"native"`` when torchvision's compiled ops load (nothing was changed), ``"pure_torch"`` when the
        pure-torch NMS kernels were registered, ``"absent"`` when torchvision is not installed.
    """
    global _LIBRARY, _STATE
    if _STATE is not None:
        return _STATE
    if importlib.util.find_spec("torchvision") is None:
        return "absent"
    if not _op_defined("nms"):
        path = _extension_path()
        if path is not None:
            try:
                torch.ops.load_library(str(path))
            except (OSError, RuntimeError, ImportError) as exc:
                _LOG.info("torchvision's compiled ops do not load (%s); using pure-torch NMS", exc)
    if _op_defined("nms"):
        _STATE = "native"
        import torchvision  # noqa: F401

        return _STATE

    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", greedy_nms, "CPU")
    library.impl("qnms", _qnms, "CPU")
    _LIBRARY = library
    # torchvision must import with _has_ops() False (it would otherwise register Meta kernels for roi_align
    # and the other ops that do not exist); only afterwards do we declare the NMS ops available.
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # drop half-imported modules left by an earlier failed import
    import torchvision
    import torchvision.extension

    def _has_ops() -> bool:
        return True

    torchvision.extension._has_ops = _has_ops
    _STATE = "pure_torch"
    return _STATE


__all__ = ["ensure_torchvision_cpu_ops", "greedy_nms"]
