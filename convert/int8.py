"""The one INT8 converter set-up of the classifier exports (PTQ in export_classifier, QAT in qat_classifier)."""

from __future__ import annotations

from typing import Any

import numpy as np


def full_integer(converter: Any, representative: np.ndarray) -> bytes:
    """Convert with ``converter`` (a ``tf.lite.TFLiteConverter``) to full-integer INT8: int8 input and output,
    int8 builtin ops only, activation ranges calibrated on ``representative`` (model input pixels, one per row)."""
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
