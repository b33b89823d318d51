"""``import edgeskin`` is fast, and the runtime never loads TensorFlow, PyTorch or Keras."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

IMPORT_BUDGET_S = 0.3  # the target, on an idle machine (slow marker)
# What any machine meets even under load; importing TensorFlow or PyTorch by mistake takes several seconds.
IMPORT_BOUND_S = 2.0
HEAVY = ("tensorflow", "torch", "keras")


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.shared
def test_classify_does_not_load_tensorflow_torch_or_keras(shared_file):
    model = shared_file("weights/tflite/mobilenet_v2_1.0_224_quant.tflite")
    labels = shared_file("weights/tflite/imagenet_labels.txt")
    panda = shared_file("data/non_lesion/panda.jpg")
    out = _python(
        f"""
        import json, sys
        import edgeskin
        with edgeskin.Classifier.from_model({str(model)!r}, {str(labels)!r}) as classifier:
            label = classifier.classify(edgeskin.read_image({str(panda)!r})).label
        print(json.dumps({{"label": label, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    report = json.loads(out)
    assert report["label"].startswith("giant panda")
    assert report["loaded"] == []


def test_import_edgeskin_loads_nothing_heavy():
    out = _python(
        """
        import sys
        import edgeskin
        print(sorted(m for m in ("numpy", "cv2", "ai_edge_litert", "tensorflow", "torch", "keras") if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


def _import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import edgeskin; print(time.perf_counter() - t)"
    seconds = min(float(_python(code)) for _ in range(3))
    print(f"import edgeskin: {seconds * 1000:.1f} ms (min of 3)")
    return seconds


def test_import_edgeskin_is_quick_even_on_a_busy_machine():
    assert _import_seconds() <= IMPORT_BOUND_S


@pytest.mark.slow
def test_import_edgeskin_takes_at_most_300_ms():
    assert _import_seconds() <= IMPORT_BUDGET_S


LAZY_PACKAGES = ("edgeskin.core", "edgeskin.runtime", "edgeskin.capture", "edgeskin.tasks")


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_a_package_exports_each_name_from_the_submodule_its_table_names(package: str) -> None:
    import importlib

    namespace = importlib.import_module(package)
    assert namespace.__all__, f"{package} exports nothing"
    for module_name, names in namespace._EXPORTS.items():
        module = importlib.import_module(f"{package}.{module_name}")
        for name in names:
            assert getattr(namespace, name) is getattr(module, name), f"{package}.{name}"
    assert sorted(namespace.__all__) == sorted(name for names in namespace._EXPORTS.values() for name in names)
    assert set(namespace.__all__) <= set(dir(namespace))
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        namespace.no_such_name  # noqa: B018


def test_the_runtime_spec_module_lists_as_public_the_names_the_package_exports_from_it() -> None:
    import edgeskin.runtime as runtime
    from edgeskin.runtime import spec

    assert spec.__all__ == list(runtime._EXPORTS["spec"])
    assert all(hasattr(spec, name) for name in spec.__all__)


@pytest.mark.parametrize(
    ("package", "heavy"), [("edgeskin.core", "cv2"), ("edgeskin.core.boxes", "cv2"), ("edgeskin.runtime", "numpy")]
)
def test_importing_a_package_or_one_submodule_loads_only_what_is_asked_for(package: str, heavy: str) -> None:
    out = _python(
        f"""
        import sys
        import {package}
        print({heavy!r} in sys.modules)
        """
    )
    assert out.strip() == "False"


def test_a_name_whose_submodule_is_absent_says_so() -> None:
    from edgeskin._lazy import lazy_exports

    getattr_, dir_, all_ = lazy_exports("edgeskin.tasks", {"no_such_task": ("Gone",)})
    assert all_ == ["Gone"] and "Gone" in dir_()
    with pytest.raises(AttributeError, match="Gone is not available: edgeskin.tasks.no_such_task is not installed"):
        getattr_("Gone")
