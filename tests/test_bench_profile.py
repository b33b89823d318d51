"""``edgeskin bench --profile``: the expected frame time on a device with 1, 2, 4 views, from costs measured here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeskin import bench
from edgeskin.devices import load_profile


def _estimate(profile_name: str, **changes):
    arguments = dict(
        end_to_end_p50=20.0,
        classifier_used_ms=5.0,  # one batch of 4 views
        lesions=1.0,
        views=4,
        view_ms=1.5,
        batch_ms={1: 1.5, 2: 2.6},
        threads=2,
    )
    arguments.update(changes)
    return bench.profile_estimate(load_profile(profile_name), **arguments)


def test_the_estimate_swaps_the_classifier_invokes_and_scales_by_the_stated_factor() -> None:
    estimate = _estimate("rpi4")
    rows = {row["views"]: row for row in estimate["rows"]}
    assert sorted(rows) == [1, 2, 4]
    assert estimate["outside_classifier_ms"] == 15.0
    assert rows[4]["frame_ms_here"] == 20.0  # the views in use: the frame as measured
    assert rows[2]["frame_ms_here"] == pytest.approx(15.0 + 2.6)
    assert rows[1]["frame_ms_here"] == pytest.approx(16.5)
    low, high = estimate["slowdown_vs_x86"]
    assert (low, high) == (5, 10) and "assumed" in estimate["slowdown_source"]
    assert rows[1]["frame_ms_device"] == [round(16.5 * low, 1), round(16.5 * high, 1)]
    assert rows[4]["within_budget"] == (20.0 * high <= estimate["latency_budget_ms"])
    text = "\n".join(bench.format_profile_estimate(estimate))
    assert "rpi4" in text and "x 5-10" in text and "assumed" in text


def test_without_a_batch_measure_the_views_multiply_the_one_view_invoke() -> None:
    estimate = _estimate("rpi4", lesions=2.0, batch_ms={}, classifier_used_ms=12.0, end_to_end_p50=30.0)
    row = next(r for r in estimate["rows"] if r["views"] == 2)
    assert row["classifier_invoke_ms"] == pytest.approx(2 * 2 * 1.5)
    assert "one-view invoke" in row["classifier_source"]


def test_the_rows_carry_the_accuracy_the_spec_records_for_that_many_views() -> None:
    estimate = _estimate("rpi4", accuracy={1: 0.707, 4: 0.732})
    rows = {row["views"]: row for row in estimate["rows"]}
    assert rows[1]["internal_balanced_accuracy_7dx"] == 0.707
    assert rows[4]["internal_balanced_accuracy_7dx"] == 0.732
    assert rows[2]["internal_balanced_accuracy_7dx"] is None
    lines = bench.format_profile_estimate(estimate)
    assert "7-dx BACC" in lines[2]
    by_views = {line.split()[0].rstrip("*"): line for line in lines[3:6]}
    assert "0.707" in by_views["1"] and "n/a" in by_views["2"] and "0.732" in by_views["4"]
    # Without recorded figures the column is left out.
    assert "BACC" not in "\n".join(bench.format_profile_estimate(_estimate("rpi4")))


def test_views_accuracy_reads_one_view_and_the_specs_own_views() -> None:
    from types import SimpleNamespace

    metrics = {
        "int8_single_view_uncalibrated": {"dx": {"balanced_accuracy": 0.7}},
        "int8_uncalibrated": {"dx": {"balanced_accuracy": 0.73}},
    }
    assert bench.views_accuracy(SimpleNamespace(metrics=metrics, tta=("identity", "hflip"))) == {1: 0.7, 2: 0.73}
    assert bench.views_accuracy(SimpleNamespace(metrics={}, tta=())) == {}
    try:
        from edgeskin.models import default_classifier_path
        from edgeskin.runtime.spec import load_spec

        spec = load_spec(default_classifier_path().with_suffix(".json"))
    except Exception as exc:  # noqa: BLE001 - no shipped models in this checkout
        pytest.skip(f"no shipped classifier ({exc})")
    recorded = bench.views_accuracy(spec)
    assert set(recorded) == {1, len(spec.tta)}
    assert recorded[len(spec.tta)] == spec.metrics["int8_uncalibrated"]["dx"]["balanced_accuracy"]


def test_a_profile_without_a_factor_gets_only_this_machines_figures() -> None:
    estimate = _estimate("rpi5-coral-usb")
    assert estimate["slowdown_vs_x86"] is None
    assert all("frame_ms_device" not in row for row in estimate["rows"])
    assert "no device figure" in "\n".join(bench.format_profile_estimate(estimate))


def test_bench_profile_on_the_shipped_models_prints_the_budget(tmp_path: Path, capsys) -> None:
    from edgeskin.cli import main

    try:
        from edgeskin.models import default_classifier_path, default_detector_path

        default_classifier_path(), default_detector_path()
    except Exception as exc:  # noqa: BLE001 - no shipped models in this checkout
        pytest.skip(f"no shipped models ({exc})")
    out = tmp_path / "bench.json"
    code = main(["bench", "--profile", "rpi4", "--runs", "3", "--warmup", "1", "--threads", "1", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "expected per-frame time on rpi4" in printed and "budget 350 ms" in printed and "7-dx BACC" in printed
    result = json.loads(out.read_text())
    assert bench.validate_result(result) == []
    estimate = result["profile_estimate"]
    assert [row["views"] for row in estimate["rows"]] == [1, 2, 4]
    assert result["classifier_view_invoke_ms"]["p50"] > 0
