"""convert.edgetpu_report on a real INT8 model (Google's MobileNetV2, known to compile for the Edge TPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ai_edge_litert")

from convert.edgetpu_report import _shape_limitation, edgetpu_report, format_report  # noqa: E402


@pytest.mark.shared
def test_report_on_a_real_edgetpu_compatible_model(shared_file) -> None:
    model = shared_file("weights/tflite/mobilenet_v2_1.0_224_quant.tflite")
    report = edgetpu_report(model)
    summary = report["summary"]
    assert summary["full_int8"] and summary["integer_io"]
    assert summary["unsupported_op_types"] == []
    assert summary["predicted_edgetpu_share"] == 1.0
    assert report["op_counts"]["CONV_2D"] == 36
    assert report["inputs"][0]["dtype"] == "uint8" and report["inputs"][0]["zero_point"] == 128
    assert "edgetpu_compiler -s -o OUT_DIR" in format_report(report)


@pytest.mark.parametrize(
    "shape,limited", [([1, 1001], False), ([1, 4, 2100, 16], True), ([1, 20000], True), ([16000], False)]
)
def test_softmax_shape_limitation(shape: list[int], limited: bool) -> None:
    assert bool(_shape_limitation("SOFTMAX", [shape])) is limited
    assert _shape_limitation("CONV_2D", [shape]) == ""


def test_missing_file_fails_loudly(tmp_path: Path) -> None:
    from edgeskin.errors import ModelError

    with pytest.raises(ModelError, match="missing.tflite"):
        edgetpu_report(tmp_path / "missing.tflite")


def test_the_report_lists_the_graphs_own_operators_not_a_delegate_node() -> None:
    """The runtime's interpreter without its default delegate: XNNPACK would fold the ops into DELEGATE nodes."""
    from edgeskin.models import default_detector_path
    from edgeskin.runtime.interpreter import make_interpreter

    path = default_detector_path()
    ops = {op["op_name"] for op in make_interpreter(path, default_delegates=False)._get_ops_details()}
    assert "DELEGATE" not in ops and "CONV_2D" in ops
    with_xnnpack = {op["op_name"] for op in make_interpreter(path)._get_ops_details()}
    assert "DELEGATE" in with_xnnpack
