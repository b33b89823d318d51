"""Interpreter choice, delegates, bad model files and TFLiteModel, with the real ai_edge_litert and fakes."""

from __future__ import annotations

import logging
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from runtime_fakes import FakeInterpreter, fake_tflite_file, tensor_details

from edgeskin.errors import ConfigError, DelegateError, InterpreterNotFoundError, ModelError
from edgeskin.runtime import interpreter as interp
from edgeskin.runtime.interpreter import InterpreterBackend, TFLiteModel, interpreter_backend, make_interpreter

HIDDEN = None  # a None entry in sys.modules makes "import name" raise ImportError


def _hide(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, HIDDEN)


def _fake_tensorflow() -> types.ModuleType:
    tf = types.ModuleType("tensorflow")
    tf.lite = types.SimpleNamespace(
        Interpreter=type("TfLiteInterpreter", (), {}),
        experimental=types.SimpleNamespace(load_delegate=lambda library: ("tf delegate", library)),
    )
    return tf


# -- interpreter choice ------------------------------------------------------------------------------


def test_ai_edge_litert_is_preferred_when_installed():
    from ai_edge_litert import interpreter as litert

    backend = interpreter_backend()
    assert backend.name == "ai_edge_litert.interpreter"
    assert backend.Interpreter is litert.Interpreter
    assert backend.load_delegate is litert.load_delegate


def test_tflite_runtime_is_next(monkeypatch):
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter, fake.load_delegate = object, print
    _hide(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter")
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    assert interpreter_backend().name == "tflite_runtime.interpreter"
    assert interpreter_backend().Interpreter is object


def test_tensorflow_lite_is_the_last_resort(monkeypatch):
    tf = _fake_tensorflow()
    _hide(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter")
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    backend = interpreter_backend()
    assert backend.name == "tensorflow.lite"
    assert backend.Interpreter is tf.lite.Interpreter
    assert backend.load_delegate("x") == ("tf delegate", "x")


def test_no_interpreter_at_all_names_the_install_command(monkeypatch):
    _hide(
        monkeypatch,
        "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter", "tensorflow",
    )  # fmt: skip
    with pytest.raises(InterpreterNotFoundError, match="pip install ai-edge-litert") as info:
        interpreter_backend()
    assert isinstance(info.value, ImportError)
    for tried in ("ai_edge_litert", "tflite_runtime", "tensorflow.lite"):
        assert tried in str(info.value)


@pytest.mark.train
@pytest.mark.shared
@pytest.mark.filterwarnings("ignore::UserWarning")  # tf.lite.Interpreter's own deprecation notice
def test_real_tensorflow_lite_fallback_classifies_the_panda(monkeypatch, google_model, imagenet_labels, panda_path):
    pytest.importorskip("tensorflow", reason="needs the [train] extra (TensorFlow) for the tf.lite fallback")
    from edgeskin.image import read_image
    from edgeskin.tasks.classifier import Classifier

    _hide(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter")
    with Classifier.from_model(google_model, imagenet_labels) as classifier:
        assert interpreter_backend().name == "tensorflow.lite"
        assert classifier.classify(read_image(panda_path)).label.startswith("giant panda")


# -- delegates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "system, library", [("Linux", "libedgetpu.so.1"), ("Darwin", "libedgetpu.1.dylib"), ("Windows", "edgetpu.dll")]
)
def test_edgetpu_library_name_per_platform(system, library):
    assert interp.edgetpu_library_name(system) == library


@pytest.fixture
def no_edgetpu_library():
    """The real machine state these tests assert about: libedgetpu is not installed here."""
    if interp._library_loadable(interp.edgetpu_library_name()):
        pytest.skip("the Edge TPU runtime is installed on this machine; these tests need it absent")


@pytest.mark.shared
def test_edgetpu_requested_but_absent_raises_naming_the_fix(no_edgetpu_library, quant_model):
    with pytest.raises(DelegateError) as info:
        TFLiteModel.from_file(quant_model, delegate="edgetpu")
    message = str(info.value)
    assert "libedgetpu.so.1" in message
    assert "libedgetpu1-std" in message
    assert "edgetpu_compiler" in message and "_edgetpu.tflite" in message
    assert "\n" not in message


@pytest.mark.shared
def test_auto_falls_back_to_the_cpu_and_warns_once(no_edgetpu_library, quant_model, caplog):
    caplog.set_level(logging.WARNING, logger="edgeskin")
    models = [TFLiteModel.from_file(quant_model, delegate="auto") for _ in range(2)]
    assert [m.delegate for m in models] == ["cpu", "cpu"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "auto" in warnings[0].getMessage() and "CPU" in warnings[0].getMessage()
    out = models[1].run(np.zeros((224, 224, 3), np.float32))
    assert out["MobilenetV2/Predictions/Softmax"].shape == (1, 1001)


def _fake_backend(loaded: list, load_delegate=None) -> InterpreterBackend:
    def make(**kwargs):
        loaded.append(kwargs)
        return FakeInterpreter(
            [tensor_details("in", 0, [1, 2], np.float32)], [tensor_details("out", 1, [1, 2], np.float32)], lambda x: [x]
        )

    return InterpreterBackend("fake", make, load_delegate or (lambda library: ("delegate", library)))


def test_edgetpu_delegate_is_handed_to_the_interpreter_when_present(monkeypatch, tmp_path):
    monkeypatch.setattr(interp, "_library_loadable", lambda name: True)
    created: list = []
    _, used = interp._open_interpreter(
        fake_tflite_file(tmp_path / "m_edgetpu.tflite"),
        num_threads=3,
        delegate="edgetpu",
        backend=_fake_backend(created),
    )
    assert used == "edgetpu"
    assert created[0]["experimental_delegates"] == [("delegate", interp.edgetpu_library_name())]
    assert created[0]["num_threads"] == 3


def test_edgetpu_library_present_but_device_missing_is_a_delegate_error(monkeypatch, tmp_path):
    def failing(library):
        raise ValueError("Failed to load delegate from libedgetpu.so.1\n")

    monkeypatch.setattr(interp, "_library_loadable", lambda name: True)
    with pytest.raises(DelegateError, match="could not be loaded.*libedgetpu1-std"):
        interp._open_interpreter(
            fake_tflite_file(tmp_path / "m.tflite"), delegate="edgetpu", backend=_fake_backend([], failing)
        )


def test_cpu_never_touches_the_delegate(monkeypatch, tmp_path):
    monkeypatch.setattr(interp, "_library_loadable", lambda name: pytest.fail("cpu must not probe the Edge TPU"))
    created: list = []
    _, used = interp._open_interpreter(fake_tflite_file(tmp_path / "m.tflite"), backend=_fake_backend(created))
    assert used == "cpu" and "experimental_delegates" not in created[0] and "num_threads" not in created[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"delegate": "gpu"}, "delegate must be one of cpu, edgetpu, auto"), ({"num_threads": 0}, "num_threads")],
)
def test_invalid_interpreter_options(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_interpreter(fake_tflite_file(tmp_path / "m.tflite"), **kwargs)


# -- bad model files ------------------------------------------------------------------------------------


def _jpeg_named_tflite(tmp_path, panda_path):
    return Path(shutil.copy(panda_path, tmp_path / "model.tflite"))


def _truncated(tmp_path, quant_model):
    data = quant_model.read_bytes()
    path = tmp_path / "truncated.tflite"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.shared
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp, panda, model: tmp / "missing.tflite", "model file not found"),
        (lambda tmp, panda, model: tmp, "not a file"),
        (lambda tmp, panda, model: (tmp / "e.tflite").write_bytes(b"") or tmp / "e.tflite", "not a TFLite flatbuffer"),
        (lambda tmp, panda, model: _jpeg_named_tflite(tmp, panda), "not a TFLite flatbuffer"),
        (lambda tmp, panda, model: _truncated(tmp, model), "truncated or corrupt"),
    ],
    ids=["missing", "directory", "empty", "jpeg-renamed", "truncated-half"],
)
def test_bad_model_files_fail_clearly_at_load(tmp_path, panda_path, quant_model, make, message):
    path = make(tmp_path, panda_path, quant_model)
    with pytest.raises(ModelError, match=message) as info:
        TFLiteModel.from_file(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


# -- TFLiteModel on the real model ------------------------------------------------------------------------


@pytest.mark.shared
def test_real_model_tensors_outputs_timing_and_ops(quant_model):
    with TFLiteModel.from_file(quant_model, num_threads=1) as model:
        (inp,) = model.inputs
        assert (inp.name, inp.shape, inp.dtype, inp.scale, inp.zero_point) == (
            "input", (1, 224, 224, 3), np.dtype(np.uint8), 0.0078125, 128,
        )  # fmt: skip
        assert model.output_names == ("MobilenetV2/Predictions/Softmax",)
        assert model.signature_key is None
        out = model.run(np.zeros((224, 224, 3), np.float32))  # batch axis added
        probs = out["MobilenetV2/Predictions/Softmax"]
        assert probs.dtype == np.float32 and probs.shape == (1, 1001)
        assert probs.min() >= 0.0 and probs.max() <= 1.0 and 0.0 < probs.sum() <= 1.0  # a dequantized softmax
        assert model.invoke_ms > 0
        counts = model.op_counts()
        assert counts["CONV_2D"] == 36 and counts["DEPTHWISE_CONV_2D"] == 17 and "DELEGATE" not in counts
        assert "DELEGATE" in model.op_names(include_delegate_nodes=True)
    with pytest.raises(ModelError, match="closed"):
        model.run(np.zeros((224, 224, 3), np.float32))


@pytest.mark.shared
def test_set_input_quantizes_floats_and_keeps_integers_of_the_tensor_dtype(quant_model):
    with TFLiteModel.from_file(quant_model) as model:
        raw = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3)).astype(np.uint8)
        np.testing.assert_array_equal(model.set_input(raw), raw)
        np.testing.assert_array_equal(model.interpreter.get_tensor(model.input.index), raw)
        floats = np.full((224, 224, 3), 0.5, np.float32)
        np.testing.assert_array_equal(model.set_input(floats), np.full((1, 224, 224, 3), 192, np.uint8))


@pytest.mark.shared
@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((1, 100, 100, 3), np.float32), r"expected shape \(1, 224, 224, 3\), got \(1, 100, 100, 3\)"),
        (np.full((224, 224, 3), np.nan, np.float32), "NaN"),
    ],
)
def test_set_input_rejects_wrong_shapes_and_non_finite_values(quant_model, x, message):
    with TFLiteModel.from_file(quant_model) as model, pytest.raises(ConfigError, match=message):
        model.run(x)


# -- named multi-output models (signature runner) with a fake ----------------------------------------------


def _signature_fake() -> FakeInterpreter:
    inputs = [tensor_details("serving_default_image:0", 0, [1, 2, 2, 3], np.int8, 1.0, -128)]
    outputs = [
        tensor_details("PartitionedCall:0", 7, [1, 1, 1, 2], np.int8, 0.5, 0),
        tensor_details("PartitionedCall:1", 9, [1, 3], np.int8, 1 / 256, -128),
    ]

    def compute(x):
        return [np.full((1, 1, 1, 2), 4), np.array([[-128, 0, 127]])]

    return FakeInterpreter(
        inputs, outputs, compute, signature_inputs=["image"], signature_outputs=["features", "probs"]
    )


def test_a_single_signature_model_is_named_by_the_signature_and_runs_on_its_graph_tensors():
    fake = _signature_fake()
    model = TFLiteModel(fake)
    assert model.signature_key == "serving_default"
    assert [i.name for i in model.inputs] == ["image"]
    assert model.output_names == ("features", "probs")
    assert model.output("probs").tensor_name == "PartitionedCall:1"
    out = model.run(np.full((2, 2, 3), 200.0))
    assert model._runner is None and fake.invocations == 1  # no per-call resize, allocate and copies
    graph_input = fake._tensors[0]
    assert graph_input.dtype == np.int8 and graph_input.shape == (1, 2, 2, 3)
    assert (graph_input == 72).all()  # 200 - 128, quantized with the tensor's own parameters
    np.testing.assert_allclose(out["features"], np.full((1, 1, 1, 2), 2.0))
    np.testing.assert_allclose(out["probs"], [[0.0, 0.5, 255 / 256]])


def test_a_model_with_several_signatures_runs_through_the_signature_runner():
    fake = _signature_fake()
    listed = fake.get_signature_list()
    fake.get_signature_list = lambda: {**listed, "other": listed["serving_default"]}
    model = TFLiteModel(fake)
    assert model.signature_key == "serving_default" and model._runner is not None
    out = model.run(np.full((2, 2, 3), 200.0))
    runner_input = model._runner.calls[0]["image"]
    assert runner_input.dtype == np.int8 and runner_input.shape == (1, 2, 2, 3)
    assert (runner_input == 72).all()
    np.testing.assert_allclose(out["probs"], [[0.0, 0.5, 255 / 256]])


def test_plain_models_use_tensor_indices_and_names():
    inputs = [tensor_details("x", 0, [1, 3], np.uint8, 0.5, 10)]
    outputs = [tensor_details("y", 5, [1, 3], np.float32)]
    model = TFLiteModel(FakeInterpreter(inputs, outputs, lambda x: [x.astype(np.float32) * 2]))
    assert model.signature_key is None
    out = model.run(np.array([[0.0, 1.0, 5.0]]))
    np.testing.assert_array_equal(out["y"], [[20.0, 24.0, 40.0]])  # quantized 10, 12, 20 then doubled
    with pytest.raises(ModelError, match=r"no output named 'z'.*\['y'\]"):
        model.output("z")
    with pytest.raises(ConfigError, match="takes 1 inputs"):
        model.run({"x": np.zeros((1, 3)), "w": np.zeros((1, 3))})


def test_run_can_return_only_some_outputs_as_stored():
    model = TFLiteModel(_signature_fake())
    out = model.run(np.full((2, 2, 3), 200.0), outputs=["probs"], raw=True)
    assert list(out) == ["probs"]
    assert out["probs"].dtype == np.int8
    np.testing.assert_array_equal(out["probs"], [[-128, 0, 127]])
    np.testing.assert_allclose(model.output("probs").dequantize(out["probs"]), [[0.0, 0.5, 255 / 256]])
    with pytest.raises(ModelError, match="no output named 'nope'"):
        model.run(np.full((2, 2, 3), 200.0), outputs=["nope"])
