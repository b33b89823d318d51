"""Pure numpy/OpenCV core: box maths, resize/letterbox, crop, preprocessing, class activation maps.

Nothing here touches an interpreter, a camera or a file.
"""

from edgeskin.core.boxes import box_area, box_iou, clip_boxes, mask_to_box, nms, xywh_to_xyxy, xyxy_to_xywh
from edgeskin.core.cam import class_activation_map, upsample_cam
from edgeskin.core.crop import crop_with_margin
from edgeskin.core.geometry import ImageTransform, letterbox, resize_stretch, resize_to_input
from edgeskin.core.preprocess import (
    OPS,
    PROFILES,
    PreprocessingProfile,
    PreprocessStep,
    clahe_lightness,
    denoise,
    get_profile,
    hair_mask,
    normalize,
    remove_hair,
    shades_of_gray,
)

__all__ = [
    "OPS",
    "PROFILES",
    "ImageTransform",
    "PreprocessStep",
    "PreprocessingProfile",
    "box_area",
    "box_iou",
    "clahe_lightness",
    "class_activation_map",
    "clip_boxes",
    "crop_with_margin",
    "denoise",
    "get_profile",
    "hair_mask",
    "letterbox",
    "mask_to_box",
    "nms",
    "normalize",
    "remove_hair",
    "resize_stretch",
    "resize_to_input",
    "shades_of_gray",
    "upsample_cam",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
