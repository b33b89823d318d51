"""Device profiles: every shipped profile loads, says what it should, and unknown names fail loudly."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from edgeskin.devices import DeviceProfile, available_profiles, detect_profile, load_profile
from edgeskin.errors import ConfigError

EXPECTED = ("coral-devboard", "rpi4", "rpi5", "rpi5-coral-usb", "x86")


def test_the_five_profiles_are_shipped_inside_the_package():
    assert available_profiles() == EXPECTED
    packaged = {p.name for p in resources.files("edgeskin.devices").joinpath("profiles").iterdir()}
    assert {f"{name}.json" for name in EXPECTED} <= packaged


@pytest.mark.parametrize(
    ("name", "threads", "delegate", "variant", "source", "lores"),
    [
        ("rpi4", 4, "cpu", "int8", "picamera2", (384, 288)),
        ("rpi5", 4, "cpu", "int8", "picamera2", (640, 480)),
        ("rpi5-coral-usb", 2, "edgetpu", "edgetpu", "picamera2", (640, 480)),
        ("coral-devboard", 4, "edgetpu", "edgetpu", "0", (640, 480)),
        ("x86", None, "cpu", "int8", "0", (640, 480)),
    ],
)
def test_profiles_say_how_to_run_on_their_device(name, threads, delegate, variant, source, lores):
    profile = load_profile(name)
    assert profile.name == name
    assert (profile.threads, profile.delegate, profile.model_variant, profile.source) == (
        threads,
        delegate,
        variant,
        source,
    )
    assert profile.lores_size == lores
    assert profile.main_size[0] >= lores[0] and profile.main_size[1] >= lores[1]
    assert abs(profile.main_size[0] / profile.main_size[1] - lores[0] / lores[1]) < 0.01  # same aspect: no stretch
    assert profile.latency_budget_ms > 0 and profile.description
    assert profile.num_threads >= 1


def test_budgets_follow_the_hardware():
    budget = {name: load_profile(name).latency_budget_ms for name in EXPECTED}
    assert budget["rpi4"] > budget["rpi5"] > budget["rpi5-coral-usb"]


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        load_profile("rpi3")
    assert str(info.value) == f"unknown device profile 'rpi3'; known profiles: {', '.join(EXPECTED)}"


def test_profile_round_trips_and_loads_from_a_file(tmp_path):
    data = load_profile("rpi4").to_dict()
    data.update(name="my-pi", threads=3)
    path = tmp_path / "my-pi.json"
    path.write_text(json.dumps(data))
    mine = load_profile(path)
    assert mine.name == "my-pi" and mine.threads == 3 and mine.lores_size == (384, 288)
    assert DeviceProfile.from_dict(mine.to_dict()) == mine


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threads": 0}, "threads must be a positive integer"),
        ({"delegate": "gpu"}, "delegate must be one of cpu, edgetpu, auto"),
        ({"models": {"variant": "fp16"}}, "models.variant must be one of int8, edgetpu"),
        ({"delegate": "edgetpu"}, "needs models compiled for the Edge TPU"),
        ({"camera": {"lores_size": [640, 480], "main_size": [320, 240]}}, "larger than main_size"),
        ({"camera": {"lores_size": [640], "main_size": [320, 240]}}, "expected [width, height]"),
        ({"live": {"smoothing": 1.0}}, "live.smoothing"),
        ({"latency_budget_ms": 0}, "latency_budget_ms must be positive"),
        ({"models": {"tta": ["identity", "sideways"]}}, "unknown test-time augmentation view"),
    ],
)
def test_invalid_profiles_fail_with_a_reason(tmp_path, change, message):
    data = load_profile("rpi4").to_dict()
    data.update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert message in str(info.value)


def test_unreadable_profile_files_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="device profile file not found"):
        load_profile(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_profile(broken)
    with pytest.raises(ConfigError, match="missing threads, delegate, camera"):
        DeviceProfile.from_dict({"name": "x"})


@pytest.mark.parametrize(
    ("model", "machine", "expected"),
    [
        (b"Raspberry Pi 5 Model B Rev 1.0\x00", "aarch64", "rpi5"),
        (b"Raspberry Pi 4 Model B Rev 1.5\x00", "aarch64", "rpi4"),
        (None, "x86_64", "x86"),
    ],
)
def test_detect_profile(tmp_path, model, machine, expected):
    path = tmp_path / "model"
    if model is not None:
        path.write_bytes(model)
    assert detect_profile(path, machine) == expected


def test_detect_profile_on_an_unknown_board_asks_for_a_name(tmp_path):
    with pytest.raises(ConfigError, match="choose one of coral-devboard, rpi4"):
        detect_profile(tmp_path / "absent", "aarch64")


def _install(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"x")


def test_pipeline_options_for_a_cpu_profile():
    from edgeskin.devices import pipeline_options

    views = ("identity", "hflip", "vflip", "rot180")
    assert pipeline_options(load_profile("rpi4")) == {"threads": 4, "delegate": "cpu", "tta": views}
    assert pipeline_options(load_profile("rpi4"), threads=2) == {"threads": 2, "delegate": "cpu", "tta": views}


@pytest.mark.parametrize("name", EXPECTED)
def test_every_profile_states_its_views_threads_and_stream_sizes(name):
    data = json.loads((resources.files("edgeskin.devices") / "profiles" / f"{name}.json").read_text())
    assert "threads" in data and {"lores_size", "main_size"} <= set(data["camera"])
    assert isinstance(data["models"]["tta"], list)  # stated, not left to the classifier spec
    assert load_profile(name).classifier_tta == tuple(data["models"]["tta"])


def test_a_profile_can_set_the_classifier_views_and_they_reach_the_pipeline(tmp_path):
    from edgeskin.devices import pipeline_options

    data = load_profile("rpi4").to_dict()
    data["models"]["tta"] = []
    (tmp_path / "fast.json").write_text(json.dumps(data))
    fast = load_profile(tmp_path / "fast.json")
    assert fast.classifier_tta == ()
    assert pipeline_options(fast) == {"threads": 4, "delegate": "cpu", "tta": ()}
    assert DeviceProfile.from_dict(fast.to_dict()) == fast
    assert load_profile("rpi4").to_dict()["models"]["tta"] == ["identity", "hflip", "vflip", "rot180"]


def test_pipeline_options_for_a_coral_use_the_edgetpu_builds(tmp_path, monkeypatch):
    from edgeskin.devices import edgetpu_model_path, pipeline_options
    from edgeskin.errors import ModelError
    from edgeskin.models import CLASSIFIER_NAME, DETECTOR_NAME

    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tmp_path))
    _install(tmp_path, *(f"{n}.{ext}" for n in (CLASSIFIER_NAME, DETECTOR_NAME) for ext in ("tflite", "json")))
    profile = load_profile("rpi5-coral-usb")
    with pytest.raises(ModelError, match=r"edgetpu_compiler on an x86-64 machine .*devices/README.md"):
        pipeline_options(profile)
    _install(tmp_path, *(f"{n}_edgetpu.{ext}" for n in (CLASSIFIER_NAME, DETECTOR_NAME) for ext in ("tflite", "json")))
    options = pipeline_options(profile)
    assert options["delegate"] == "edgetpu" and options["threads"] == 2
    assert options["classifier"] == tmp_path / f"{CLASSIFIER_NAME}_edgetpu.tflite"
    assert options["detector"] == tmp_path / f"{DETECTOR_NAME}_edgetpu.tflite"
    assert pipeline_options(profile, delegate="cpu") == {  # plain int8 models
        "threads": 2,
        "delegate": "cpu",
        "tta": ("identity", "hflip", "vflip", "rot180"),
    }
    assert edgetpu_model_path("m/a.tflite").as_posix() == "m/a_edgetpu.tflite"
    assert edgetpu_model_path("m/a_edgetpu.tflite").as_posix() == "m/a_edgetpu.tflite"
