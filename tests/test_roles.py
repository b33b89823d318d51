"""The shipped tasks fill the roles the live loop, kiosk and UI depend on; refer_decision lives with the labels."""

from __future__ import annotations

import numpy as np

from edgeskin.labels import DX_CLASSES, refer_decision, refer_rule
from edgeskin.roles import PipelineRole
from edgeskin.tasks import pipeline as pipeline_module
from edgeskin.tasks.pipeline import LesionPipeline


def test_lesion_pipeline_fills_the_pipeline_role():
    with LesionPipeline.from_defaults(threads=1) as pipeline:
        assert isinstance(pipeline, PipelineRole)
        assert pipeline.refer_threshold == pipeline.classifier.spec.malignant_threshold


def test_refer_decision_is_re_exported_from_the_pipeline_for_old_imports():
    assert pipeline_module.refer_decision is refer_decision and pipeline_module.refer_rule is refer_rule


def test_refer_decision_threshold_and_group_rule():
    probs = np.zeros((2, len(DX_CLASSES)), np.float32)
    probs[0, DX_CLASSES.index("mel")] = 0.35
    probs[0, DX_CLASSES.index("nv")] = 0.65
    probs[1, DX_CLASSES.index("nv")] = 1.0
    assert refer_decision(probs, DX_CLASSES, 0.3).tolist() == [True, False]
    assert refer_decision(probs, DX_CLASSES, 0.4).tolist() == [False, False]
    assert refer_decision(probs, DX_CLASSES, None).tolist() == [False, False]  # Benign is the top group
    assert "0.3" in refer_rule(0.3) and "no triage threshold" in refer_rule(None)


def test_task_options_share_one_validated_base():
    import pytest

    from edgeskin.errors import ConfigError
    from edgeskin.tasks.base import BaseOptions
    from edgeskin.tasks.classifier import ClassifierOptions
    from edgeskin.tasks.detector import DetectorOptions

    for options in (ClassifierOptions, DetectorOptions, BaseOptions):
        with pytest.raises(ConfigError, match="delegate must be one of cpu, edgetpu, auto; got 'gpu'"):
            options("m.tflite", delegate="gpu")
        with pytest.raises(ConfigError, match="num_threads must be a positive integer"):
            options("m.tflite", num_threads=0)
    detector = DetectorOptions("d.tflite", num_threads=2, delegate="auto", max_det=5)
    assert detector.base_options == BaseOptions("d.tflite", None, 2, "auto")
    assert isinstance(ClassifierOptions("c.tflite", tta=()), BaseOptions)
