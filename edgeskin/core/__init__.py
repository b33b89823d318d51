"""Pure numpy/OpenCV core: box maths, resize/letterbox, crop, preprocessing, class activation maps.

Nothing here touches an interpreter, a camera or a file. Names are imported on first use, so importing one
submodule (``edgeskin.core.boxes``) does not load the others or OpenCV.
"""

from __future__ import annotations

from edgeskin._lazy import lazy_exports

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "box_area": "boxes",
    "box_iou": "boxes",
    "clip_boxes": "boxes",
    "mask_to_box": "boxes",
    "nms": "boxes",
    "xywh_to_xyxy": "boxes",
    "xyxy_to_xywh": "boxes",
    "class_activation_map": "cam",
    "upsample_cam": "cam",
    "crop_with_margin": "crop",
    "ImageTransform": "geometry",
    "letterbox": "geometry",
    "resize_stretch": "geometry",
    "resize_to_input": "geometry",
    "OPS": "preprocess",
    "PROFILES": "preprocess",
    "PreprocessingProfile": "preprocess",
    "PreprocessStep": "preprocess",
    "clahe_lightness": "preprocess",
    "denoise": "preprocess",
    "get_profile": "preprocess",
    "hair_mask": "preprocess",
    "normalize": "preprocess",
    "remove_hair": "preprocess",
    "shades_of_gray": "preprocess",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
