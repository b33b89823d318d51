"""Detector: YOLO decoding through the letterbox, NMS, thresholds, the tensor contract, and the classical fallback."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.core.boxes import box_iou, mask_to_box
from edgeskin.core.geometry import letterbox
from edgeskin.errors import ConfigError, ImageError
from edgeskin.results import Detections
from edgeskin.runtime.interpreter import TensorInfo
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.detector import ClassicalDetector, Detector, DetectorOptions, darkness_contrast, decode_yolo

FRAME_W, FRAME_H = 640, 480
INPUT = 320
# 640x480 letterboxed into 320x320: scale 0.5, 40 pixels of padding at the top and bottom.
TRANSFORM = letterbox(np.zeros((FRAME_H, FRAME_W, 3), np.uint8), (INPUT, INPUT))[1]
FRAME_BOXES = np.array([[100, 60, 300, 220], [400, 300, 560, 460], [20, 20, 60, 80]], np.float32)
SCORES = np.array([0.9, 0.7, 0.3], np.float32)


def _tensor(frame_boxes, scores, *, normalized=True, channels_last=False, extra=(), classes=None, nc=1):
    """A YOLO prediction tensor [1, 4 + nc, N] holding ``frame_boxes`` (mapped into the input) and scores."""
    input_boxes = frame_boxes * 0.5 + np.array([0, 40, 0, 40], np.float32)
    xywh = np.concatenate([(input_boxes[:, :2] + input_boxes[:, 2:]) / 2, input_boxes[:, 2:] - input_boxes[:, :2]], 1)
    if normalized:
        xywh = xywh / INPUT
    class_scores = np.zeros((len(scores), nc), np.float32)
    class_ids = np.zeros(len(scores), int) if classes is None else np.asarray(classes)
    class_scores[np.arange(len(scores)), class_ids] = scores
    rows = np.concatenate([xywh, class_scores], axis=1)
    if len(extra):
        rows = np.concatenate([rows, np.asarray(extra, np.float32)], axis=0)
    pred = rows.T[np.newaxis]  # [1, 4 + nc, N]
    return np.transpose(pred, (0, 2, 1)) if channels_last else pred


@pytest.mark.parametrize("channels_last", [False, True], ids=["1x(4+nc)xN", "1xNx(4+nc)"])
@pytest.mark.parametrize("boxes", ["xywh_normalized", "xywh_pixels"])
def test_known_boxes_come_back_in_frame_pixels_through_the_letterbox(channels_last, boxes):
    raw = _tensor(FRAME_BOXES, SCORES, normalized=boxes == "xywh_normalized", channels_last=channels_last)
    found = decode_yolo(raw, (INPUT, INPUT), TRANSFORM, num_classes=1, boxes=boxes, confidence_threshold=0.25)
    np.testing.assert_allclose(found.xyxy, FRAME_BOXES, atol=1e-3)
    np.testing.assert_allclose(found.confidence, SCORES)
    assert found.class_id.tolist() == [0, 0, 0]


def test_the_channel_axis_is_found_without_the_class_count():
    # Without nc the smaller axis is the channel axis, true of real models (N is in the thousands).
    background = np.tile(np.array([[0.5, 0.5, 0.1, 0.1, 0.01]], np.float32), (20, 1))
    raw = _tensor(FRAME_BOXES, SCORES, channels_last=True, extra=background)
    found = decode_yolo(raw, (INPUT, INPUT), TRANSFORM, confidence_threshold=0.25)
    np.testing.assert_allclose(found.xyxy, FRAME_BOXES, atol=1e-3)


def test_scores_below_the_threshold_are_dropped_and_max_det_is_kept():
    raw = _tensor(FRAME_BOXES, SCORES)
    found = decode_yolo(raw, (INPUT, INPUT), TRANSFORM, num_classes=1, confidence_threshold=0.5)
    np.testing.assert_allclose(found.confidence, [0.9, 0.7])
    assert len(decode_yolo(raw, (INPUT, INPUT), TRANSFORM, num_classes=1, confidence_threshold=0.2, max_det=1)) == 1
    assert len(decode_yolo(raw, (INPUT, INPUT), TRANSFORM, num_classes=1, confidence_threshold=0.95)) == 0


def test_nms_suppresses_an_overlapping_box_of_the_same_class_only():
    shifted = FRAME_BOXES[:1] + np.array([10, 10, 10, 10], np.float32)  # IoU about 0.8 with the first box
    boxes = np.concatenate([FRAME_BOXES[:1], shifted])
    same = decode_yolo(_tensor(boxes, [0.9, 0.8]), (INPUT, INPUT), TRANSFORM, num_classes=1)
    assert len(same) == 1 and same.confidence[0] == pytest.approx(0.9)
    raw = _tensor(boxes, [0.9, 0.8], classes=[0, 1], nc=2)
    aware = decode_yolo(raw, (INPUT, INPUT), TRANSFORM, num_classes=2)
    assert sorted(aware.class_id.tolist()) == [0, 1]
    agnostic = decode_yolo(raw, (INPUT, INPUT), TRANSFORM, num_classes=2, class_agnostic=True)
    assert len(agnostic) == 1 and agnostic.class_id.tolist() == [0]
    # The IoU threshold is respected: at 0.9 the two boxes (IoU < 0.9) both survive.
    assert (
        len(decode_yolo(_tensor(boxes, [0.9, 0.8]), (INPUT, INPUT), TRANSFORM, num_classes=1, iou_threshold=0.9)) == 2
    )


def test_a_box_inside_the_padding_is_dropped():
    padding_only = np.array([[INPUT / 2 / INPUT, 10 / INPUT, 40 / INPUT, 16 / INPUT, 0.95]], np.float32)  # y 2..18
    raw = _tensor(FRAME_BOXES[:1], SCORES[:1], extra=padding_only)
    found = decode_yolo(raw, (INPUT, INPUT), TRANSFORM, num_classes=1)
    np.testing.assert_allclose(found.xyxy, FRAME_BOXES[:1], atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 6, 100), (1, 100, 7), (1, 2, 3, 4)])
def test_a_tensor_without_a_4_plus_nc_axis_is_refused(shape):
    with pytest.raises(ValueError, match="expected"):
        decode_yolo(np.zeros(shape, np.float32), (INPUT, INPUT), TRANSFORM, num_classes=1)


# -- the Detector with a fake model ---------------------------------------------------------------------------


class FakeModel:
    """A TFLiteModel look-alike returning a fixed prediction tensor and recording what it was fed."""

    delegate = "cpu"

    def __init__(self, input_info: TensorInfo, predictions: np.ndarray, name: str = "predictions"):
        self.input = input_info
        self.inputs = (input_info,)
        self._predictions = predictions
        self._name = name
        self.fed: list[np.ndarray] = []
        self.invoke_ms = 0.0
        self.closed = False

    @property
    def output_names(self):
        return (self._name,)

    def output(self, name):
        assert name == self._name
        return TensorInfo(name, self._predictions.shape, self._predictions.dtype, 0.0, 0, 1)

    def run(self, x):
        self.fed.append(np.asarray(x))
        self.invoke_ms = 2.0
        return {self._name: self._predictions.copy()}

    def run_filled(self, fill, outputs):
        buffer = np.zeros(self.input.shape, self.input.dtype)
        fill(buffer)
        return {name: out for name, out in self.run(buffer).items() if name in outputs}

    def close(self):
        self.closed = True


INT8_INPUT = TensorInfo(
    "images", (1, INPUT, INPUT, 3), np.dtype(np.int8), 1.0, -128, 0, scales=(1.0,), zero_points=(-128,)
)


def _spec(**changes) -> ModelSpec:
    data = {
        "name": "fake-det",
        "task": "detection",
        "input": {"size": [INPUT, INPUT], "resize": "letterbox"},
        "labels": ["lesion"],
        "outputs": {"predictions": "predictions"},
        "layout": "yolo",
        "boxes": "xywh_normalized",
        "thresholds": {"confidence": 0.5, "iou": 0.45},
    }
    data.update(changes)
    return ModelSpec.from_dict(data)


def test_the_detector_letterboxes_quantizes_and_uses_the_spec_thresholds():
    frame = np.full((FRAME_H, FRAME_W, 3), 200, np.uint8)
    with Detector(FakeModel(INT8_INPUT, _tensor(FRAME_BOXES, SCORES)), _spec()) as detector:
        found = detector.detect(frame)
        fed = detector.model.fed[0]
        timings = detector.last_timings_ms
    assert detector.model.closed
    np.testing.assert_allclose(found.confidence, [0.9, 0.7])  # spec threshold 0.5 drops 0.3
    np.testing.assert_allclose(found.xyxy, FRAME_BOXES[:2], atol=1e-3)
    assert fed.dtype == np.int8 and fed.shape == (1, INPUT, INPUT, 3)
    assert (fed[0, :40] == 114 - 128).all() and (
        fed[0, 40:280] == 200 - 128
    ).all()  # letterbox pad, then q = pixel - 128
    assert set(timings) == {"preprocess_ms", "invoke_ms", "postprocess_ms"} and timings["invoke_ms"] == 2.0


def test_threshold_overrides_beat_the_spec():
    detector = Detector(FakeModel(INT8_INPUT, _tensor(FRAME_BOXES, SCORES)), _spec(), confidence_threshold=0.2)
    assert len(detector.detect(np.zeros((FRAME_H, FRAME_W, 3), np.uint8))) == 3
    assert Detector(FakeModel(INT8_INPUT, np.zeros((1, 5, 1))), _spec(thresholds={})).confidence_threshold == 0.25


def test_a_float_model_gets_the_spec_normalisation():
    info = TensorInfo("images", (1, INPUT, INPUT, 3), np.dtype(np.float32), 0.0, 0, 0)
    detector = Detector(
        FakeModel(info, _tensor(FRAME_BOXES, SCORES)),
        _spec(input={"size": [INPUT, INPUT], "resize": "letterbox", "std": 255}),
    )
    detector.detect(np.full((FRAME_H, FRAME_W, 3), 255, np.uint8))
    fed = detector.model.fed[0]
    assert (
        fed.dtype == np.float32
        and fed[0, 100, 100, 0] == pytest.approx(1.0)
        and fed[0, 0, 0, 0] == pytest.approx(114 / 255)
    )


@pytest.mark.parametrize("scale", [1.0, 0.9999987], ids=["exact", "converter-rounded"])
def test_the_integer_fast_path_equals_the_general_path(scale):
    info = TensorInfo(
        "images", (1, INPUT, INPUT, 3), np.dtype(np.int8), scale, -128, 0, scales=(scale,), zero_points=(-128,)
    )
    detector = Detector(FakeModel(info, np.zeros((1, 5, 1))), _spec())
    assert detector._encoder.integer_shift == -128
    frame = np.random.default_rng(0).integers(0, 256, (FRAME_H, FRAME_W, 3)).astype(np.uint8)
    fast = detector.preprocess(frame)[0]
    detector._encoder.integer_shift = None
    np.testing.assert_array_equal(detector.preprocess(frame)[0], fast)


UINT8_INPUT = TensorInfo("images", (1, INPUT, INPUT, 3), np.dtype(np.uint8), 1.0, 0, 0, scales=(1.0,), zero_points=(0,))
ODD_INT8_INPUT = TensorInfo(
    "images", (1, INPUT, INPUT, 3), np.dtype(np.int8), 0.02, 3, 0, scales=(0.02,), zero_points=(3,)
)


@pytest.mark.parametrize("info", [INT8_INPUT, UINT8_INPUT, ODD_INT8_INPUT], ids=["int8", "uint8", "int8-float-maths"])
@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
@pytest.mark.parametrize("frame_hw", [(FRAME_H, FRAME_W), (FRAME_W, FRAME_H), (INPUT, INPUT)])
@pytest.mark.parametrize("std", [1.0, 1.5])
def test_the_tensor_written_in_place_is_what_preprocess_returns(info, color_order, resize, frame_hw, std):
    spec = _spec(input={"size": [INPUT, INPUT], "resize": resize, "color_order": color_order, "std": std})
    detector = Detector(FakeModel(info, np.zeros((1, 5, 1))), spec)
    assert detector._resize_in_place
    frame = np.random.default_rng(4).integers(0, 256, (*frame_hw, 3)).astype(np.uint8)
    detector.detect(frame)
    np.testing.assert_array_equal(detector.model.fed[0], detector.preprocess(frame)[0])


class QuantizedOutputModel(FakeModel):
    """A FakeModel whose prediction tensor is stored as int8 with a scale and zero point."""

    def __init__(self, stored: np.ndarray, scale: float, zero_point: int):
        super().__init__(INT8_INPUT, stored)
        self.info = TensorInfo(
            self._name,
            stored.shape,
            np.dtype(np.int8),
            scale,
            zero_point,
            1,
            scales=(scale,),
            zero_points=(zero_point,),
        )

    def output(self, name):
        assert name == self._name
        return self.info


@pytest.mark.parametrize("threshold", [0.15, 0.5, 1 / 256 * 100, 0.0, 1.0])
def test_stored_scores_are_thresholded_before_dequantizing_with_the_same_result(threshold):
    rng = np.random.default_rng(3)
    stored = rng.integers(-128, 128, (1, 5, 400)).astype(np.int8)
    model = QuantizedOutputModel(stored, 1 / 256, -128)
    detector = Detector(model, _spec(), confidence_threshold=0.9)
    detector.confidence_threshold = threshold  # as the pipeline does, after creation
    frame = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    found = detector.detect(frame)
    transform = letterbox(frame, (INPUT, INPUT))[1]
    expected = detector.decode(model.info.dequantize(stored), transform)
    np.testing.assert_array_equal(found.xyxy, expected.xyxy)
    np.testing.assert_array_equal(found.confidence, expected.confidence)
    floor = detector._score_floor[1]
    levels = np.arange(-128, 128)
    assert (model.info.dequantize(levels[levels >= floor]) >= threshold).all()
    assert not (model.info.dequantize(levels[levels < floor]) >= threshold).any()


class QuantizedDflModel(FakeModel):
    """Two int8 outputs as the yolo_dfl export stores them: DFL box logits [1, 64, N] and scores [1, 1, N]."""

    def __init__(self, logits: np.ndarray, scores: np.ndarray):
        super().__init__(INT8_INPUT, logits, name="box_logits")
        self._scores = scores
        self.infos = {
            "box_logits": TensorInfo("box_logits", logits.shape, np.dtype(np.int8), 0.11, 5, 1, scales=(0.11,), zero_points=(5,)),
            "scores": TensorInfo("scores", scores.shape, np.dtype(np.int8), 1 / 256, -128, 2, scales=(1 / 256,), zero_points=(-128,)),
        }  # fmt: skip

    @property
    def output_names(self):
        return tuple(self.infos)

    def output(self, name):
        return self.infos[name]

    def run(self, x):
        self.fed.append(np.asarray(x))
        return {"box_logits": self._predictions.copy(), "scores": self._scores.copy()}


@pytest.mark.parametrize("threshold", [0.15, 0.5, 0.0, 1.0])
def test_a_yolo_dfl_model_decodes_only_the_passing_anchors_with_the_same_result(threshold):
    from edgeskin.core.dfl import dfl_to_predictions

    rng = np.random.default_rng(5)
    n = 2100  # the anchors of a 320 input
    logits = rng.integers(-128, 128, (1, 64, n)).astype(np.int8)
    scores = rng.integers(-128, 128, (1, 1, n)).astype(np.int8)
    model = QuantizedDflModel(logits, scores)
    spec = _spec(outputs={"predictions": "box_logits", "scores": "scores"}, layout="yolo_dfl")
    detector = Detector(model, spec, confidence_threshold=0.9)
    detector.confidence_threshold = threshold
    frame = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    found = detector.detect(frame)
    # Every anchor dequantized and decoded, then thresholded: the same boxes and scores.
    raw = dfl_to_predictions(
        model.infos["box_logits"].dequantize(logits), model.infos["scores"].dequantize(scores), (INPUT, INPUT)
    )
    expected = detector.decode(raw, letterbox(frame, (INPUT, INPUT))[1])
    np.testing.assert_array_equal(found.confidence, expected.confidence)
    np.testing.assert_array_equal(found.xyxy, expected.xyxy)
    assert len(found) == len(expected) and (threshold > 0.9 or len(found) > 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"iou_threshold": -0.1}, "iou_threshold"),
        ({"max_det": 0}, "max_det"),
        ({"delegate": "gpu"}, "delegate must be one of"),
    ],
)
def test_wrong_options_fail_when_built(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DetectorOptions("det.tflite", **kwargs)


def test_a_classification_spec_cannot_make_a_detector():
    spec = ModelSpec.from_dict(
        {
            "name": "c",
            "task": "classification",
            "input": {"size": [4, 4]},
            "labels": ["a"],
            "outputs": {"probabilities": "p"},
        }
    )
    with pytest.raises(ConfigError, match="needs a detection spec"):
        Detector(FakeModel(INT8_INPUT, np.zeros((1, 5, 1))), spec)


@pytest.mark.parametrize(
    "frame", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), "image.jpg"], ids=["gray", "float", "path"]
)
def test_frames_that_are_not_rgb_uint8_are_refused(frame):
    with pytest.raises(ImageError, match="RGB uint8"):
        Detector(FakeModel(INT8_INPUT, np.zeros((1, 5, 1))), _spec()).detect(frame)


# -- a real INT8 TFLite detector, built for the test ------------------------------------------------------------


@pytest.mark.train
def test_a_real_int8_detector_finds_the_dark_square_where_it_is():
    from tiny_models import frame_with_dark_square, tiny_detector

    # 128x64 → 32x32 input: scale 0.25, 8 rows of padding on top. The square covers input cell (2, 2).
    frame = frame_with_dark_square(64, 128, square=(64, 32, 96, 64))
    with Detector.from_model(tiny_detector(), threads=1) as detector:
        found = detector.detect(frame)
    assert detector.confidence_threshold == 0.6 and len(found) == 1  # from the spec
    # Cell (2, 2) grown by 2 input pixels per side: input [14, 14, 26, 26] → frame [56, 24, 104, 72→64].
    np.testing.assert_allclose(found.xyxy[0], [56, 24, 104, 64], atol=1.0)
    assert found.confidence[0] == pytest.approx(1 - 30 / 255, abs=0.03)


# -- the classical fallback -----------------------------------------------------------------------------------


def test_darkness_contrast_is_zero_without_contrast_and_grows_with_it():
    frame = np.full((200, 200, 3), 200, np.uint8)
    assert darkness_contrast(frame, [50, 50, 150, 150]) == pytest.approx(0.0, abs=1e-3)
    frame[50:150, 50:150] = 60
    assert darkness_contrast(frame, [50, 50, 150, 150]) > 0.5
    assert darkness_contrast(frame, [0, 0, 200, 200]) == 0.0  # no ring around a whole-frame box


@pytest.mark.shared
@pytest.mark.parametrize("method", ["segment", "otsu"])
def test_the_classical_detector_finds_a_ph2_lesion(shared_file, method):
    from edgeskin.image import read_image

    frame = read_image(shared_file("data/ph2/images/IMD002.jpg"))
    truth = mask_to_box(read_image(shared_file("data/ph2/masks/IMD002_segmentation.png"))[..., 0] > 127)
    found = ClassicalDetector(method).detect(frame)
    assert isinstance(found, Detections) and len(found) == 1
    assert box_iou(found.xyxy, truth[np.newaxis])[0, 0] > 0.5
    assert 0.05 <= found.confidence[0] < 1.0


@pytest.mark.shared
def test_the_classical_detector_finds_nothing_in_the_panda(shared_file):
    from edgeskin.image import read_image

    assert len(ClassicalDetector().detect(read_image(shared_file("data/non_lesion/panda.jpg")))) == 0


def test_the_classical_detector_checks_its_options():
    with pytest.raises(ConfigError, match="method"):
        ClassicalDetector("hough")  # type: ignore[arg-type]
