"""edgeskin.bench (the quick suite behind ``edgeskin bench``), its CLI and the report's pure parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from report_fakes import report_header

from edgeskin import bench
from edgeskin.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- statistics ---------------------------------------------------------------------------------------


def test_percentiles_of_known_samples() -> None:
    stats = bench.percentiles([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert stats == {"p50": 5.5, "p90": 9.1, "mean": 5.5, "min": 1.0, "max": 10.0, "n": 10}


@pytest.mark.parametrize("samples", [[], [1.0, float("nan")], [float("inf")]])
def test_percentiles_refuses_empty_or_non_finite(samples: list[float]) -> None:
    with pytest.raises(ValueError, match="timing sample"):
        bench.percentiles(samples)


@pytest.mark.parametrize(
    ("end_to_end", "invokes", "counts", "expected"),
    [
        (12.0, {"detector": 6.0, "classifier": 2.0}, None, 1.5),  # one invoke each
        (12.0, {"detector": 6.0, "classifier": 2.0}, {"classifier": 2}, 1.2),  # two lesions
        (6.6, {"detector": 6.0, "classifier": 2.0}, {"classifier": 0}, 1.1),  # no lesion: no classifier
        (5.0, {"detector": 5.0}, None, 1.0),
    ],
)
def test_overhead_ratio(end_to_end: float, invokes: dict, counts: dict | None, expected: float) -> None:
    assert bench.overhead_ratio(end_to_end, invokes, counts) == pytest.approx(expected)


def test_overhead_ratio_refuses_a_zero_denominator() -> None:
    with pytest.raises(ValueError, match="positive sum"):
        bench.overhead_ratio(10.0, {"detector": 0.0})


def test_time_ms_counts_runs_and_warmup() -> None:
    calls = []
    samples = bench.time_ms(lambda: calls.append(1), runs=4, warmup=2)
    assert len(samples) == 4 and len(calls) == 6 and all(s >= 0 for s in samples)


# -- device detection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("board", "coral_usb", "expected"),
    [
        ("Raspberry Pi 5 Model B Rev 1.0\x00", False, "rpi5"),
        ("Raspberry Pi 4 Model B Rev 1.4\x00", False, "rpi4"),
        ("Raspberry Pi 5 Model B Rev 1.0\x00", True, "rpi5-coral-usb"),
        ("Raspberry Pi Compute Module 4 Rev 1.0\x00", False, "rpi-cm4"),
        ("Freescale i.MX8MQ Phanbell\x00", False, "coral-devboard"),
    ],
)
def test_device_id_from_a_fake_device_tree(tmp_path: Path, board: str, coral_usb: bool, expected: str) -> None:
    model = tmp_path / "model"
    model.write_bytes(board.encode())
    text = bench.read_device_model(model)
    assert "\x00" not in text
    assert bench.device_id(text, coral_usb=coral_usb) == expected


def test_device_id_off_arm_boards_names_the_cpu(tmp_path: Path) -> None:
    assert bench.read_device_model(tmp_path / "absent") is None
    assert (
        bench.device_id("", machine="x86_64", cpu_model="Intel(R) Xeon(R) Processor", coral_usb=False, features=())
        == "x86-intel-xeon"
    )
    assert (
        bench.device_id(
            "", machine="x86_64", cpu_model="AMD Ryzen 7 5800X 8-Core Processor @ 3.8GHz", coral_usb=False, features=()
        )
        == "x86-amd-ryzen-7-5800x-8-core"
    )
    assert (
        bench.device_id("", machine="aarch64", cpu_model="ARM CPU part 0xd0b", coral_usb=False, features=())
        == "aarch64-arm-part-0xd0b"
    )


def test_device_id_names_the_int8_extension_tier(tmp_path: Path) -> None:
    """Two CPUs that both call themselves "AMD EPYC" but run INT8 models 4x apart get different reference names."""
    zen2 = tmp_path / "zen2"
    zen2.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx fma avx2 bmi2\n")
    zen4 = tmp_path / "zen4"
    zen4.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
    )
    pi5 = tmp_path / "pi5"
    pi5.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n")
    assert bench.cpu_features(zen2) == ("avx2",)
    assert bench.cpu_features(zen4) == ("avx2", "avx512f", "avx512_vnni")
    assert bench.cpu_features(pi5) == ("asimddp",)
    assert bench.cpu_features(tmp_path / "absent") == ()
    ids = [
        bench.device_id("", machine="x86_64", cpu_model="AMD EPYC", coral_usb=False, features=bench.cpu_features(f))
        for f in (zen2, zen4)
    ]
    assert ids == ["x86-amd-epyc-avx2", "x86-amd-epyc-avx512vnni"]
    assert bench.device_id(
        "", machine="aarch64", cpu_model="ARM CPU part 0xd0b", coral_usb=False, features=("asimddp",)
    ) == ("aarch64-arm-part-0xd0b-dotprod")
    # A Raspberry Pi keeps its board name: the board fixes the CPU.
    assert bench.device_id("Raspberry Pi 5 Model B Rev 1.0", coral_usb=False, features=("asimddp",)) == "rpi5"
    assert bench.int8_isa(["avx2", "avx_vnni"]) == "avxvnni"
    assert bench.int8_isa([]) is None


def test_cpu_model_name_from_x86_and_pi_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\n"
    )
    pi = tmp_path / "pi"
    pi.write_text(
        "processor\t: 0\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
    )
    assert bench.cpu_model_name(x86) == "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"
    assert bench.cpu_model_name(pi) == "Raspberry Pi 4 Model B Rev 1.4"


def test_coral_usb_accelerator_found_by_its_usb_ids(tmp_path: Path) -> None:
    assert not bench.edgetpu_usb_present(tmp_path / "absent")
    other = tmp_path / "1-1"
    other.mkdir()
    (other / "idVendor").write_text("046d\n")
    (other / "idProduct").write_text("0825\n")
    assert not bench.edgetpu_usb_present(tmp_path)
    coral = tmp_path / "2-1"
    coral.mkdir()
    (coral / "idVendor").write_text("1a6e\n")
    (coral / "idProduct").write_text("089a\n")
    assert bench.edgetpu_usb_present(tmp_path)


@pytest.mark.parametrize(("governor", "warns"), [("performance", False), ("ondemand", True), ("schedutil", True)])
def test_governor_warning(tmp_path: Path, governor: str, warns: bool) -> None:
    path = tmp_path / "scaling_governor"
    path.write_text(governor + "\n")
    read = bench.cpu_governor(path)
    assert read == governor
    warning = bench.governor_warning(read)
    assert (warning is not None) is warns
    if warns:
        assert governor in warning and "performance" in warning


def test_no_governor_file_means_no_warning(tmp_path: Path) -> None:
    assert bench.cpu_governor(tmp_path / "absent") is None
    assert bench.governor_warning(None) is None


def _invoke_stats(p50: float, fastest: float) -> dict[str, float]:
    return {"p50": p50, "p90": p50 * 1.1, "mean": p50, "min": fastest, "max": p50 * 1.2, "n": 100}


def test_host_noise_calls_a_run_quiet_when_every_median_stays_near_its_fastest_call() -> None:
    quiet = bench.host_noise({"detector": _invoke_stats(13.4, 13.2), "classifier": _invoke_stats(6.1, 5.9)})
    assert quiet["quiet"] and quiet["limit"] == bench.QUIET_INVOKE_SPREAD
    assert quiet["invoke_p50_over_min"] == {"detector": round(13.4 / 13.2, 4), "classifier": round(6.1 / 5.9, 4)}
    assert bench.host_noise_warning(quiet) is None
    # One model slowed down by other work is enough: the run is not a reference figure.
    busy = bench.host_noise({"detector": _invoke_stats(13.4, 13.2), "classifier": _invoke_stats(7.8, 6.8)})
    assert not busy["quiet"]
    warning = bench.host_noise_warning(busy)
    assert warning is not None and "classifier" in warning and "15% above" in warning
    # A stricter limit turns the first run busy too; the limit is inclusive.
    assert not bench.host_noise({"detector": _invoke_stats(13.4, 13.2)}, limit=1.01)["quiet"]
    assert bench.host_noise({"detector": _invoke_stats(10.5, 10.0)}, limit=1.05)["quiet"]


def test_table_names_the_hosts_state_when_the_result_has_it(tiny_models: tuple[Path, Path]) -> None:
    from tiny_models import frame_with_dark_square

    classifier, detector = tiny_models
    frame = frame_with_dark_square(576, 768, (192, 96, 576, 480))
    result = bench.run_quick_suite(classifier, detector, frame=frame, threads=1, runs=3, warmup=1)
    noise = result["host_noise"]
    assert noise == bench.host_noise({name: result["invoke_ms"][name] for name in noise["invoke_p50_over_min"]})
    assert set(noise["invoke_p50_over_min"]) == set(result["invoke_ms"])
    assert (bench.host_noise_warning(noise) in result["warnings"]) is (not noise["quiet"])
    result["host_noise"] = bench.host_noise({"detector": _invoke_stats(15.6, 14.2)})
    assert "host BUSY: bare invoke p50 / fastest detector 1.099" in bench.format_table(result)
    result["host_noise"] = bench.host_noise({"detector": _invoke_stats(13.4, 13.2)})
    assert "host quiet: bare invoke p50 / fastest detector 1.015" in bench.format_table(result)
    del result["host_noise"]  # a result written before the check: no line
    assert not [line for line in bench.format_table(result).splitlines() if line.startswith("  host ")]


# -- the suite on tiny real models ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models() -> tuple[Path, Path]:
    from tiny_models import tiny_classifier, tiny_detector

    return tiny_classifier(), tiny_detector()


@pytest.mark.train
def test_quick_suite_result_has_the_documented_schema(tiny_models: tuple[Path, Path]) -> None:
    from tiny_models import frame_with_dark_square

    classifier, detector = tiny_models
    frame = frame_with_dark_square(576, 768, (192, 96, 576, 480))
    result = bench.run_quick_suite(classifier, detector, frame=frame, threads=1, runs=3, warmup=1)
    assert bench.validate_result(result) == []
    assert json.loads(json.dumps(result)) == result  # JSON-ready as it is
    assert result["settings"]["threads"] == 1 and result["settings"]["frame"]["size"] == [768, 576]
    assert result["lesions_per_frame"] >= 1  # the tiny detector finds the dark square
    e2e, invoke = result["end_to_end_ms"]["p50"], result["invoke_ms"]
    counts, batches = result["invoke_counts_per_frame"], result["invoke_batches"]
    # The classifier invokes predict made cover every view of every lesion, each timed bare at its batch size.
    views_run = sum(counts[name] * batch for name, batch in batches.items())
    assert views_run == result["lesions_per_frame"] * result["settings"]["classifier_views"]
    assert result["settings"]["classifier_invoke_batches"] == [batches["classifier"]] * int(counts["classifier"])
    expected = e2e / sum(invoke[name]["p50"] * counts[name] for name in invoke)
    assert result["overhead_ratio"] == pytest.approx(expected, rel=1e-3)
    assert result["overhead_ratio"] > 1.0  # predict does everything invoke does, and more
    assert {"detect", "classify", "cam", "crop", "annotate", "detect.invoke"} <= set(result["stages_ms"])
    assert result["models"]["classifier"]["size_bytes"] == classifier.stat().st_size
    assert result["peak_rss_mb"] > 0
    assert "end to end (predict)" in bench.format_table(result)


@pytest.mark.train
def test_cli_writes_the_json_and_prints_a_table(tiny_models, tmp_path: Path, capsys, monkeypatch) -> None:
    import cv2
    from tiny_models import frame_with_dark_square

    classifier, detector = tiny_models
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), frame_with_dark_square(240, 320, (80, 40, 240, 200))[..., ::-1])
    out = tmp_path / "nested" / "bench.json"
    code = main(
        [
            "bench",
            "--classifier",
            str(classifier),
            "--detector",
            str(detector),
            "--image",
            str(image),
            "--runs",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "overhead ratio" in printed and "bare invoke detector" in printed
    result = json.loads(out.read_text())
    assert bench.validate_result(result) == []
    assert result["settings"]["frame"]["source"] == "file"
    assert result["settings"]["frame"]["original_size"] == [320, 240] and result["settings"]["frame"]["size"] == [
        768,
        576,
    ]
    assert "decode" in result["stages_ms"]


def test_validate_result_names_what_is_wrong() -> None:
    assert bench.validate_result({}) == [f"missing key '{k}'" for k in bench.REQUIRED_KEYS]
    stats = {"p50": 2.0, "p90": 1.0, "mean": 1.5, "min": 1.0, "max": 2.0, "n": 2}  # p90 < p50
    result = {key: {} for key in bench.REQUIRED_KEYS}
    result.update(schema_version=bench.SCHEMA_VERSION, end_to_end_ms=stats, overhead_ratio=float("nan"), stages_ms={})
    problems = bench.validate_result(result)
    assert any("end_to_end_ms" in p for p in problems)
    assert any("overhead_ratio" in p for p in problems)
    assert any("invoke_ms: missing 'detector'" in p for p in problems)


def test_cli_device_id(capsys) -> None:
    assert main(["bench", "--device-id"]) == 0
    assert capsys.readouterr().out.strip() == bench.device_id()


def test_cli_refuses_model_options_for_the_report(capsys, tmp_path: Path) -> None:
    assert main(["bench", "report", "--classifier", "x.tflite", "--out", str(tmp_path / "report")]) == 2
    assert "quick suite" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_synthetic_frame_is_deterministic() -> None:
    a, b = bench.synthetic_frame(seed=0), bench.synthetic_frame(seed=0)
    assert a.shape == (576, 768, 3) and a.dtype == np.uint8 and np.array_equal(a, b)


# -- the report's pure parts ------------------------------------------------------------------------


def _fake_results() -> dict:
    stats = {"p50": 10.0, "p90": 12.0, "mean": 10.5, "min": 9.0, "max": 14.0, "n": 10}
    pipeline = {
        "end_to_end_ms": stats,
        "fps": 100.0,
        "overhead_ratio": 1.12,
        "overhead_ms": 2.0,
        "cam_share_of_classify": 0.02,
        "invoke_ms": {"detector": {**stats, "p50": 6.0}, "classifier": {**stats, "p50": 2.0}},
        "invoke_counts_per_frame": {"detector": 1.0, "classifier": 1.0},
        "lesions_per_frame": 1.0,
        "peak_rss_mb": 120.0,
        "stages_ms": {"detect": stats, "classify": stats, "cam": stats, "annotate": {**stats, "p50": 2.5}},
        "warnings": [],
        "settings": {"threads": 2, "frame": {"size": [768, 576]}},
    }
    return {
        **report_header("2026-01-01T00:00:00+00:00", "x86-test", "Test CPU"),
        "load_average_at_start": [0.1, 0.1, 0.1],
        "load_average_at_end": [0.2, 0.1, 0.1],
        "latency": {"pipeline-2t": pipeline, "classifier-keras": {"missing": "no Keras model"}},
        "peers": {"ultralytics_adapted": {"speedup_ours_vs_ultralytics_p50": 1.4}},
        "cam": {"metrics": {"same_class": {"pearson_grid": {"median": 0.97}}}},
        "accuracy": {"classifier": {"rows": {"float_resnet50": {"missing": "not trained: no weights"}}}},
    }


def test_report_acceptance_and_missing_items() -> None:
    from edgeskin.report.render import acceptance, missing_items, render_markdown

    results = _fake_results()
    met = {row["what"].split(" (")[0].split(",")[0]: row["met"] for row in acceptance(results)}
    assert list(met.values()) == [True, True, False, True, True, True]
    results["latency"]["pipeline-2t"].update(overhead_ratio=1.25)  # issue 14: at most 1.15
    results["latency"]["pipeline-2t"]["stages_ms"]["annotate"]["p50"] = 3.5  # 0.35x detect: over 0.3
    assert [row["met"] for row in acceptance(results)] == [True, False, False, True, True, False]
    missing = missing_items(results)
    assert "latency.classifier-keras: no Keras model" in missing
    assert any("float_resnet50: not trained" in m for m in missing)
    page = render_markdown(results, {})
    assert "2026-01-01" in page and "Test CPU" in page and "not trained: no weights" in page
    assert "| overhead_ratio" in page


@pytest.mark.train
@pytest.mark.parametrize("always", [True, False])
def test_the_suite_says_how_often_the_context_view_ran(tiny_models: tuple[Path, Path], always: bool) -> None:
    from tiny_models import frame_with_dark_square

    from edgeskin.core.context import ContextRule

    classifier, detector = tiny_models
    frame = frame_with_dark_square(576, 768, (192, 96, 576, 480))
    rule = ContextRule(upsampling=0.0) if always else ContextRule(upsampling=100.0)  # any crop / no crop
    result = bench.run_quick_suite(classifier, detector, frame=frame, threads=1, runs=3, warmup=1, context=rule)
    assert bench.validate_result(result) == []
    assert json.loads(json.dumps(result)) == result
    context = result["context_view"]
    assert context["frames"] == 3 and context["ran"] == (3 if always else 0)
    assert context["rule"] == {
        "upsampling": 0.0 if always else 100.0,
        "area": None,
        "context": "frame",
        "combination": "mean",
    }
    assert {"p50", "p90"} <= set(context["classify_ms_with"]) and {"p50", "p90"} <= set(context["classify_ms_without"])
    # The context view is one single-view invoke more than the crops' views, and only when it ran.
    counts, batches = result["invoke_counts_per_frame"], result["invoke_batches"]
    views_run = sum(counts[name] * batch for name, batch in batches.items())
    assert views_run == result["lesions_per_frame"] * result["settings"]["classifier_views"] + (1 if always else 0)
    assert f"context view: ran on {context['ran']} of 3 frames" in bench.format_table(result)
