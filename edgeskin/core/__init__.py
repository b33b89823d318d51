"""Pure numpy/OpenCV core: box maths, resize/letterbox, crop, preprocessing, class activation maps.

Nothing here touches an interpreter, a camera or a file. Names are imported on first use, so importing one
submodule (``edgeskin.core.boxes``) does not load the others or OpenCV.
"""

from __future__ import annotations

from edgeskin._lazy import lazy_exports

# module (relative to this package) -> the public names it defines
_EXPORTS: dict[str, tuple[str, ...]] = {
    "boxes": ("box_area", "box_iou", "clip_boxes", "mask_to_box", "nms", "xywh_to_xyxy", "xyxy_to_xywh"),
    "cam": ("class_activation_map", "upsample_cam"),
    "crop": ("crop_with_margin",),
    "geometry": ("ImageTransform", "letterbox", "resize_stretch", "resize_to_input"),
    "preprocess": (
        "OPS",
        "PROFILES",
        "PreprocessingProfile",
        "PreprocessStep",
        "clahe_lightness",
        "denoise",
        "get_profile",
        "hair_mask",
        "normalize",
        "remove_hair",
        "shades_of_gray",
    ),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
