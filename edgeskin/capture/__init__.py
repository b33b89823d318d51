"""Cameras, videos and image folders as frame sources, the quality gate, the live loop and the kiosk.

Names are imported on first use, so ``import edgeskin.capture`` does not import OpenCV until needed and
never imports picamera2 or Tkinter (those load inside the functions that need them).
"""

from __future__ import annotations

from edgeskin._lazy import lazy_exports

# module (relative to this package) -> the public names it defines
_EXPORTS: dict[str, tuple[str, ...]] = {
    "sources": (
        "Frame",
        "FrameSource",
        "CameraLostError",
        "Picamera2Source",
        "OpenCVSource",
        "ImageFolderSource",
        "open_source",
    ),
    "quality": ("QualityGate", "QualityReport", "QualityThresholds", "assess_quality"),
    "live": ("LiveLoop", "LiveFrame", "LiveSummary", "StillAnalysis", "DiagnosisSmoother"),
    "kiosk": ("KioskApp", "run_kiosk"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
