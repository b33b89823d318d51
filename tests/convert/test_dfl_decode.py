"""Box decoding outside the model (edgeskin.core.dfl) equals ultralytics' in-graph decoding."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.core.dfl import anchor_points, dfl_distances, dfl_to_predictions


def test_anchor_points_follow_the_three_grids():
    points, strides = anchor_points((320, 320))
    assert points.shape == (40 * 40 + 20 * 20 + 10 * 10, 2) == (2100, 2)
    np.testing.assert_array_equal(points[0], [4, 4])  # first cell of the stride-8 grid
    np.testing.assert_array_equal(points[1], [12, 4])  # x runs fastest
    np.testing.assert_array_equal(points[40], [4, 12])
    np.testing.assert_array_equal(points[1600], [8, 8])  # first cell of the stride-16 grid
    assert strides[0] == 8 and strides[1600] == 16 and strides[-1] == 32


def test_peaked_distributions_give_their_bin_as_distance():
    n = 3
    logits = np.full((64, n), -50.0, np.float32)
    for side, k in enumerate((2, 5, 7, 15)):
        logits[side * 16 + k] = 50.0
    np.testing.assert_allclose(dfl_distances(logits)[:, 0], [2, 5, 7, 15], atol=1e-4)
    uniform = dfl_distances(np.zeros((64, n), np.float32))
    np.testing.assert_allclose(uniform, 7.5, atol=1e-5)  # the mean of bins 0..15


def test_a_known_box_is_decoded_in_input_fractions():
    n = 2100
    logits = np.full((64, n), -50.0, np.float32)
    for side, k in enumerate((1, 2, 3, 4)):
        logits[side * 16 + k, 0] = 50.0  # anchor 0: centre (4, 4), stride 8
    scores = np.zeros((1, n), np.float32)
    scores[0, 0] = 0.9
    out = dfl_to_predictions(logits[None], scores[None], (320, 320))
    assert out.shape == (1, 5, n)
    x0, y0, x1, y1 = 4 - 8, 4 - 16, 4 + 24, 4 + 32  # left 1, top 2, right 3, bottom 4 cells of 8 px
    expected = [(x0 + x1) / 2 / 320, (y0 + y1) / 2 / 320, (x1 - x0) / 320, (y1 - y0) / 320, 0.9]
    np.testing.assert_allclose(out[0, :, 0], expected, atol=1e-5)
    # channels-last tensors ([1, N, C], as a converter may write them) decode the same
    np.testing.assert_allclose(dfl_to_predictions(logits.T[None], scores.T[None], (320, 320)), out)


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="DFL logits"):
        dfl_to_predictions(np.zeros((1, 64, 10)), np.zeros((1, 1, 2100)), (320, 320))
    with pytest.raises(ValueError, match="expected shape"):
        dfl_distances(np.zeros((60, 5)))


@pytest.mark.parametrize("input_hw", [(320, 320), (288, 384)], ids=["square", "4:3"])
def test_matches_ultralytics_decoding_of_a_real_yolov5n_head(input_hw):
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    from training.torch_compat import ensure_torchvision_cpu_ops

    ensure_torchvision_cpu_ops()
    from ultralytics.nn.tasks import DetectionModel

    from convert.export_detector_edgetpu import dfl_head_module

    torch.manual_seed(0)
    model = DetectionModel("yolov5n.yaml", nc=1, verbose=False).eval()
    height, width = input_hw
    images = torch.rand(1, 3, height, width) * 255
    with torch.no_grad():
        reference = model(images / 255.0)[0].numpy()  # [1, 5, N]: xywh in input pixels, score
        logits, scores = dfl_head_module(model)(images)
    ours = dfl_to_predictions(logits.numpy(), scores.numpy(), input_hw)
    assert ours.shape == reference.shape == (1, 5, sum((height // s) * (width // s) for s in (8, 16, 32)))
    size = np.array([width, height, width, height], np.float32)[:, None]
    np.testing.assert_allclose(ours[0, :4] * size, reference[0, :4], rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(ours[0, 4], reference[0, 4], atol=1e-6)


def test_the_detector_decodes_a_yolo_dfl_model_like_an_in_graph_one():
    from edgeskin.errors import SpecError
    from edgeskin.runtime.interpreter import TensorInfo
    from edgeskin.runtime.spec import ModelSpec
    from edgeskin.tasks.detector import Detector

    n = 2100
    logits = np.full((1, 64, n), -50.0, np.float32)
    for side, k in enumerate((3, 3, 3, 3)):
        logits[0, side * 16 + k, 500] = 50.0  # anchor 500: stride-8 grid cell (20, 12), centre (164, 100)
    scores = np.zeros((1, 1, n), np.float32)
    scores[0, 0, 500] = 0.8

    class TwoOutputModel:
        delegate, invoke_ms = "cpu", 0.0
        input = TensorInfo(
            "images", (1, 320, 320, 3), np.dtype(np.int8), 1.0, -128, 0, scales=(1.0,), zero_points=(-128,)
        )
        inputs = (input,)

        def run(self, x):
            return {"box_logits": logits, "scores": scores}

        def close(self):
            pass

    data = {
        "name": "dfl-det", "task": "detection", "input": {"size": [320, 320], "resize": "letterbox"},
        "labels": ["lesion"], "outputs": {"predictions": "box_logits", "scores": "scores"},
        "layout": "yolo_dfl", "boxes": "xywh_normalized", "thresholds": {"confidence": 0.25},
    }  # fmt: skip
    detector = Detector(TwoOutputModel(), ModelSpec.from_dict(data))
    found = detector.detect(np.zeros((320, 320, 3), np.uint8))
    np.testing.assert_allclose(found.confidence, [0.8])
    np.testing.assert_allclose(found.xyxy, [[164 - 24, 100 - 24, 164 + 24, 100 + 24]], atol=1e-3)
    with pytest.raises(SpecError, match="yolo_dfl"):
        ModelSpec.from_dict({**data, "outputs": {"predictions": "box_logits"}})


def test_the_roles_of_a_detectors_outputs_come_from_their_shapes():
    from types import SimpleNamespace as T

    from edgeskin.core.dfl import detector_output_roles

    assert detector_output_roles([T(name="Identity", shape=(1, 5, 2100))]) == ("Identity", None)
    logits, scores = T(name="output_0", shape=(1, 64, 2100)), T(name="output_1", shape=(1, 1, 2100))
    assert detector_output_roles([scores, logits]) == ("output_0", "output_1")
    assert detector_output_roles([T(name="a", shape=(1, 2100, 64)), T(name="b", shape=(1, 2100, 1))]) == ("a", "b")
    with pytest.raises(ValueError, match="DFL logits and scores"):
        detector_output_roles([T(name="a", shape=(1, 5, 2100)), T(name="b", shape=(1, 1, 2100))])


def test_detector_input_sizes_are_a_side_or_height_by_width():
    from convert.export_detector import input_hw, parse_imgsz

    assert input_hw(320) == (320, 320)
    assert input_hw((288, 384)) == (288, 384)
    assert parse_imgsz("320") == (320, 320)
    assert parse_imgsz("288x384") == (288, 384)  # height x width, as ultralytics' imgsz=[h, w]
    for bad in (300, (288, 380), (288,), 0):
        with pytest.raises(ValueError, match="multiples of 32"):
            input_hw(bad)
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="HEIGHTxWIDTH"):
        parse_imgsz("288 by 384")
