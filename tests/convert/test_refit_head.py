"""The dense head refit (convert/refit_head.py): a new head written into the shipped INT8 model, and the head fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="editing the .tflite flatbuffer needs TensorFlow (the [train] extra)")

pytestmark = pytest.mark.train


def _model_and_head():
    from edgeskin.models import default_classifier_path
    from edgeskin.runtime.interpreter import TFLiteModel
    from edgeskin.runtime.spec import ModelSpec

    path = default_classifier_path()
    spec = ModelSpec.from_dict(json.loads(path.with_suffix(".json").read_text()))
    model = TFLiteModel.from_file(str(path), num_threads=1)
    logits = model.output(spec.outputs["probabilities"])
    return path, spec, model, logits.tensor_name or logits.name


def _run(model_bytes: bytes, tmp_path, x: np.ndarray):
    from edgeskin.runtime.interpreter import TFLiteModel

    path = tmp_path / "patched.tflite"
    path.write_bytes(model_bytes)
    with TFLiteModel.from_file(str(path), num_threads=1) as model:
        return model.run(x), model.output("logits").scale


def test_a_new_head_is_what_the_int8_model_computes(tmp_path):
    """The patched model's logits are the new float head applied to its own pooled features, within INT8 steps."""
    from convert.refit_head import dense_input_quantization, patch_dense

    path, spec, model, tensor = _model_and_head()
    kernel, bias = spec.cam_arrays()
    rng = np.random.default_rng(0)
    # A different head: the shipped one permuted and rescaled, so the old numbers cannot pass for the new ones.
    new_kernel = 1.7 * kernel[:, ::-1].astype(np.float64)
    new_bias = np.linspace(-0.5, 0.5, len(bias))
    scale, zero_point = dense_input_quantization(path.read_bytes(), tensor)
    patched = patch_dense(path.read_bytes(), tensor, new_kernel, new_bias, (-12.0, 12.0))
    x = rng.integers(0, 256, model.input.shape).astype(np.float32)
    before = model.run(x)
    after, step = _run(patched, tmp_path, x)
    np.testing.assert_array_equal(after["features"], before["features"])  # the backbone is untouched
    pooled = after["features"].mean(axis=(1, 2), dtype=np.float64)
    pooled = (np.clip(np.round(pooled / scale) + zero_point, -128, 127) - zero_point) * scale
    expected = pooled @ new_kernel + new_bias
    assert np.abs(after["logits"] - expected).max() <= 2 * step
    assert np.abs(before["logits"] - expected).max() > 10 * step


def test_the_shipped_head_written_back_changes_nothing_beyond_one_step(tmp_path):
    from convert.refit_head import patch_dense

    path, spec, model, tensor = _model_and_head()
    kernel, bias = spec.cam_arrays()
    info = model.output("logits")
    levels = np.array([-128, 127])
    low, high = (levels - info.zero_point) * info.scale
    patched = patch_dense(path.read_bytes(), tensor, kernel.astype(np.float64), bias.astype(np.float64), (low, high))
    x = np.random.default_rng(1).integers(0, 256, model.input.shape).astype(np.float32)
    after, step = _run(patched, tmp_path, x)
    assert np.abs(after["logits"] - model.run(x)["logits"]).max() <= step + 1e-6


def test_patching_refuses_a_head_of_the_wrong_shape_or_an_unknown_output():
    from convert.refit_head import patch_dense

    path, spec, _, tensor = _model_and_head()
    kernel, bias = spec.cam_arrays()
    with pytest.raises(SystemExit, match="dense weights"):
        patch_dense(path.read_bytes(), tensor, kernel[:, :3].astype(np.float64), bias[:3], (-1, 1))
    with pytest.raises(SystemExit, match="FULLY_CONNECTED"):
        patch_dense(path.read_bytes(), "no such tensor", kernel.astype(np.float64), bias, (-1, 1))


def test_the_head_fit_weights_samples_and_never_picks_an_absent_class():
    pytest.importorskip("sklearn")
    from convert.refit_head import fit_head

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3
    y = np.repeat([0, 2, 5], 60)  # classes 1, 3, 4, 6, 7 absent
    x = centres[np.searchsorted([0, 2, 5], y)] + rng.normal(size=(len(y), 16))
    kernel, bias = fit_head(x, y, np.ones(len(y)), 1.0, 8)
    assert kernel.shape == (16, 8) and bias.shape == (8,)
    predicted = (x @ kernel + bias).argmax(1)
    assert set(predicted.tolist()) <= {0, 2, 5}
    assert (predicted == y).mean() > 0.95
    # Weighting one class's samples up moves the boundary towards the others: more of the points predicted as it.
    weights = np.where(y == 0, 20.0, 1.0)
    noisy = x + rng.normal(size=x.shape) * 3
    plain = (noisy @ kernel + bias).argmax(1)
    heavy_kernel, heavy_bias = fit_head(x + rng.normal(size=x.shape) * 3, y, weights, 1.0, 8)
    heavy = (noisy @ heavy_kernel + heavy_bias).argmax(1)
    assert (heavy == 0).sum() > (plain == 0).sum()
