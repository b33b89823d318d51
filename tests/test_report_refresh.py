"""``python -m edgeskin.report --from-json BASE --refresh GROUPS``: only those groups' jobs run again, every other
section is BASE's, byte for byte, and the page says which part was measured where.

No job runs: the Runner, the models and the machine are fakes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from report_fakes import report_header

import edgeskin.bench
from edgeskin.report import render, run
from edgeskin.report.render import GROUP_TITLES, render_markdown

SIZES = ["640x480", "384x288"]
PIPELINE_JOBS = ["pipeline-1t", "pipeline-2t", "pipeline-4t", "pipeline-640x480", "pipeline-384x288"]
MODEL_JOBS = ["classifier-int8", "detector-int8", "classifier-keras", "detector-torch"]  # no float TFLite here
OTHER_JOBS = ["peers", "accuracy", "cam-fidelity"]


def _pipeline_row(p50: float, threads: int = 2, size: tuple[int, int] = (768, 576)) -> dict[str, Any]:
    stats = {"p50": p50, "p90": p50 + 1.0}
    return {
        "end_to_end_ms": stats,
        "fps": 1000.0 / p50,
        "overhead_ratio": 1.1,
        "overhead_ms": 1.0,
        "cam_share_of_classify": 0.02,
        "invoke_ms": {"detector": {"p50": 6.0}, "classifier": {"p50": 2.0}},
        "lesions_per_frame": 1.0,
        "peak_rss_mb": 120.0,
        "stages_ms": {"detect": stats, "annotate": {"p50": 1.0, "p90": 1.5}},
        "warnings": [],
        "settings": {"threads": threads, "frame": {"size": list(size)}},
    }


def _model_row(p50: float) -> dict[str, Any]:
    return {
        "latency_ms": {"p50": p50, "p90": p50 + 1.0},
        "fps": 1000.0 / p50,
        "model_size_mb": 1.0,
        "peak_rss_mb": 90.0,
    }


def _base() -> dict[str, Any]:
    """A report.json as the runs before provenance wrote it (measured on another machine)."""
    latency = {f"pipeline-{n}t": _pipeline_row(12.0, threads=n) for n in (1, 2, 4)}
    latency["pipeline-640x480"] = _pipeline_row(10.0, size=(640, 480))
    latency["pipeline-384x288"] = _pipeline_row(8.0, size=(384, 288))
    latency.update({
        "classifier-int8": _model_row(2.1),
        "classifier-float16": _model_row(2.3),
        "classifier-float32": _model_row(2.2),
        "detector-int8": _model_row(1.1),
        "detector-float16": _model_row(3.2),
        "detector-float32": _model_row(2.9),
        "classifier-keras": {**_model_row(12.9), "device": "CPU (no GPU available)"},
        "detector-torch": {**_model_row(8.6), "device": "CPU (no GPU available)"},
    })  # fmt: skip
    return {
        **report_header("2026-11-30T23:07:14+00:00", "x86-intel-xeon", "Intel Xeon"),
        "load_average_at_start": [0.48, 1.76, 2.56],
        "other_busy_processes_at_start": [],
        "models": {"classifier": "/old/cls.tflite", "detector": "/old/det.tflite"},
        "export_float": {"classifier": {"cls-float32.tflite": 2797456}},
        "latency": latency,
        "peers": {"missing": "ultralytics is not installed"},
        "accuracy": {"classifier": {"rows": {"float_resnet50": {"missing": "not trained"}}}},
        "cam": {"metrics": {"same_class": {"pearson_grid": {"median": 0.991}}}},
        "load_average_at_end": [1.27, 1.62, 2.4],
        "other_processes_cpu": {"cpu_seconds": 4.65, "wall_seconds": 129.3, "average_cores": 0.036},
        "other_busy_processes_at_end": [],
        "job_seconds": {"pipeline-1t": 4.6, "accuracy": 47.8},
    }


class FakeRunner:
    """Stands in for :class:`run.Runner`: records each job's name and arguments and answers at once."""

    calls: list[tuple[str, tuple[str, ...]]] = []

    def __init__(self, log_dir: Path, env: dict[str, str], retries: int = 2, job_args: Any = ()) -> None:
        self.timings: dict[str, float] = {}

    def rejudge(self) -> None:
        pass

    def __call__(self, name: str, module: str, *args: str, env: Any = None, timed: bool = False) -> dict[str, Any]:
        FakeRunner.calls.append((name, args))
        self.timings[name] = 1.0
        if name.startswith("pipeline-"):
            threads = int(args[args.index("--threads") + 1])
            size = tuple(int(v) for v in args[args.index("--size") + 1].split("x")) if "--size" in args else (768, 576)
            return _pipeline_row(9.0, threads=threads, size=size)
        return {"job": name, "measured": "now"}


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...]]]:
    """No job, no model file, no /proc sampling: the report's run on a made-up machine ``x86-new``."""
    FakeRunner.calls = []
    monkeypatch.setattr(run, "Runner", FakeRunner)
    monkeypatch.setattr(run, "models", lambda: (Path("/new/cls.tflite"), Path("/new/det.tflite")))
    monkeypatch.setattr(run, "float_tflite_paths", lambda inputs, classifier, detector: {})
    monkeypatch.setattr(run, "busy_processes", lambda: [])
    monkeypatch.setattr(run, "write_plots", lambda results, out: {})
    monkeypatch.setattr(run, "_profile_sizes", lambda: list(SIZES))
    monkeypatch.setattr(edgeskin.bench, "device_id", lambda: "x86-new")
    monkeypatch.setattr(
        edgeskin.bench,
        "machine_info",
        lambda: {"cpu_model": "New CPU", "cores": 2, "interpreter": {"package": "litert", "version": "2.3.0"}},
    )
    return FakeRunner.calls


def _refresh(tmp_path: Path, base: dict[str, Any], groups: str, *extra: str) -> dict[str, Any]:
    (tmp_path / "base.json").write_text(json.dumps(base))
    out = tmp_path / "out"
    assert run.main(["--from-json", str(tmp_path / "base.json"), "--refresh", groups, "--out", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text())


def test_groups_are_the_steps_the_page_names() -> None:
    assert run.GROUPS == tuple(GROUP_TITLES) == ("pipeline", "models", "peers", "accuracy", "cam")


def test_refresh_needs_from_json(fake_run, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--refresh", "pipeline", "--out", "unused"])
    assert exit_info.value.code == 2
    assert "--refresh: expected --from-json BASE too" in capsys.readouterr().err
    assert fake_run == []


def test_an_unknown_group_is_refused_with_the_valid_ones(fake_run, tmp_path, capsys) -> None:
    (tmp_path / "base.json").write_text(json.dumps(_base()))
    for groups, got in (("pipeline,latency", "got 'latency'"), (",", "got none")):
        with pytest.raises(SystemExit):
            run.main(["--from-json", str(tmp_path / "base.json"), "--refresh", groups, "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert "expected one or more of pipeline, models, peers, accuracy, cam" in err and got in err
    assert fake_run == []


def test_a_different_thread_count_from_base_is_refused(fake_run, tmp_path, capsys) -> None:
    (tmp_path / "base.json").write_text(json.dumps(_base()))
    with pytest.raises(SystemExit):
        run.main(["--from-json", str(tmp_path / "base.json"), "--refresh", "pipeline", "--threads", "4", "--out", "x"])
    assert "expected --threads 2 (BASE's, which its kept rows used), got 4" in capsys.readouterr().err


def test_a_full_run_gives_every_group_its_own_provenance(fake_run, tmp_path) -> None:
    out = tmp_path / "out"
    assert run.main(["--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [name for name, _ in fake_run] == PIPELINE_JOBS + MODEL_JOBS + OTHER_JOBS
    assert list(report["provenance"]) == list(run.GROUPS)
    entry = report["provenance"]["pipeline"]
    assert all(value == entry for value in report["provenance"].values())
    assert (entry["date"], entry["device_id"], entry["cpu"]) == (report["date"], "x86-new", "New CPU")
    assert entry["command"] == f"python -m edgeskin.report --out {out}"
    assert "load_average_at_start" in entry and "other_processes_cpu" in entry
    assert "kept_from" not in report


def test_a_pipeline_refresh_runs_the_pipeline_jobs_only_and_keeps_the_rest(fake_run, tmp_path) -> None:
    base = _base()
    report = _refresh(tmp_path, base, "pipeline")
    assert [name for name, _ in fake_run] == PIPELINE_JOBS
    # The same arguments as a full run gives these jobs.
    assert fake_run[0][1] == ("pipeline", "--threads", "1", "--runs", "100")
    assert fake_run[3][1] == ("pipeline", "--threads", "2", "--runs", "100", "--size", "640x480")
    assert [key for key in report["latency"] if key.startswith("pipeline-")] == PIPELINE_JOBS
    assert all(report["latency"][key]["end_to_end_ms"]["p50"] == 9.0 for key in PIPELINE_JOBS)
    kept = {key: row for key, row in base["latency"].items() if not key.startswith("pipeline-")}
    assert json.dumps({k: v for k, v in report["latency"].items() if k in kept}) == json.dumps(kept)
    for key in ("peers", "accuracy", "cam", "export_float"):
        assert json.dumps(report[key]) == json.dumps(base[key]), key
    assert (report["device_id"], report["machine"]["cpu_model"]) == ("x86-new", "New CPU")
    assert report["job_seconds"] == dict.fromkeys(PIPELINE_JOBS, 1.0)
    assert report["models"] == {"classifier": "/new/cls.tflite", "detector": "/new/det.tflite"}


def test_provenance_of_the_refreshed_and_the_kept_groups(fake_run, tmp_path) -> None:
    base = _base()
    report = _refresh(tmp_path, base, "pipeline")
    provenance = report["provenance"]
    assert list(provenance) == list(run.GROUPS)
    new = provenance["pipeline"]
    assert (new["date"], new["device_id"], new["cpu"]) == (report["date"], "x86-new", "New CPU")
    assert new["command"].endswith("--refresh pipeline --out " + str(tmp_path / "out"))
    old = {
        "date": base["date"],
        "device_id": "x86-intel-xeon",
        "cpu": "Intel Xeon",
        "command": base["settings"]["command"],
        "load_average_at_start": base["load_average_at_start"],
        "other_processes_cpu": base["other_processes_cpu"],
    }
    assert all(provenance[group] == old for group in ("models", "peers", "accuracy", "cam"))
    kept_from = report["kept_from"]
    for key in ("date", "device_id", "machine", "settings", "load_average_at_start", "other_processes_cpu"):
        assert kept_from[key] == base[key], key
    assert not {"latency", "peers", "accuracy", "cam", "provenance"} & set(kept_from)

    # Refreshing that report again: its entries are copied for what is kept, its header nests in kept_from.
    FakeRunner.calls.clear()
    again = _refresh(tmp_path, report, "cam")
    assert [name for name, _ in fake_run] == ["cam-fidelity"]
    assert again["provenance"]["pipeline"] == new and again["provenance"]["models"] == old
    assert again["provenance"]["cam"]["command"].endswith("--refresh cam --out " + str(tmp_path / "out"))
    assert again["kept_from"]["kept_from"] == kept_from
    assert json.dumps(again["latency"]) == json.dumps(report["latency"])


def test_the_page_says_which_part_was_measured_where(fake_run, tmp_path) -> None:
    report = _refresh(tmp_path, _base(), "pipeline")
    page = (tmp_path / "out" / "report.md").read_text()
    assert page == render_markdown(report, {})
    lines = page.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("- **Measured in parts**")))
    assert "comparisons between rows of different parts are across machines" in lines[start]
    assert lines[start + 1].startswith(f"  - pipeline rows: {report['date']} (UTC) on `x86-new` (New CPU), by `")
    assert "--refresh pipeline" in lines[start + 1]
    assert lines[start + 2].startswith(
        "  - model rows, peers, accuracy and CAM fidelity: 2026-11-30T23:07:14+00:00 (UTC) on `x86-intel-xeon` "
        "(Intel Xeon), by `python -m benchmarks.report --out docs/benchmarks --threads 2`; load average at the "
        "start [0.48, 1.76, 2.56], other processes 0.036 cores on average."
    )
    assert lines[start + 3].startswith(f"- **Measured** (pipeline rows): {report['date']} (UTC)")
    assert any(line.startswith("- **Machine** (pipeline rows): New CPU") for line in lines)
    # The latency section's model rows sit beside pipeline rows from the other machine: one line says so.
    latency = lines.index("## Latency: edge INT8 against the float baselines (2 threads)")
    warnings = [line for line in lines if line.startswith("**Measured on different machines**")]
    assert len(warnings) == 1 and latency < lines.index(warnings[0]) < lines.index("## The INT8 pipeline end to end")
    assert "model rows here on `x86-intel-xeon`" in warnings[0] and "pipeline rows of the next section" in warnings[0]
    assert "on `x86-new`" in warnings[0]
    assert "*This section was measured 2026-11-30T23:07:14+00:00 (UTC) on `x86-intel-xeon` (Intel Xeon)*" in page


def test_acceptance_rows_say_where_they_were_measured_when_the_report_is_in_parts(fake_run, tmp_path) -> None:
    report = _refresh(tmp_path, _base(), "pipeline")
    lines = render_markdown(report, {}).splitlines()
    table = lines.index("| what | target | measured | met | measured on |")
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[-1].rstrip(" |") for line in lines[table + 2 : table + 8]
    }
    day = report["date"][:10]
    assert rows["overhead_ratio (end-to-end p50 / summed bare invoke p50)"] == f"`x86-new`, {day}"
    assert (
        rows["Speed-up over ultralytics predict on the same INT8 .tflite (same threads)"]
        == "`x86-intel-xeon`, 2026-11-30"
    )
    assert rows["INT8 CAM vs exact Grad-CAM, median Pearson (6x6 grid, same class)"] == "`x86-intel-xeon`, 2026-11-30"
    # One run, one machine: the table keeps its four columns.
    assert "| what | target | measured | met |" in render_markdown(_base(), {}).splitlines()


def test_a_report_without_provenance_renders_as_before() -> None:
    base = _base()
    page = render_markdown(base, {})
    # The header as edgeskin.report rendered it before provenance existed (one run, one machine).
    assert page.splitlines()[:10] == [
        "# edgeskin benchmark report",
        "",
        "- **Measured**: 2026-11-30T23:07:14+00:00 (UTC), one run of "
        "`python -m benchmarks.report --out docs/benchmarks --threads 2` (52 s).",
        "- **Machine**: Intel Xeon (None), 2 cores, CPU governor None, None, Python None; device id `x86-intel-xeon`.",
        "- **Edge runtime**: litert 2.3.0, CPU (XNNPACK), 2 threads unless stated; no Edge TPU.",
        "- **Float baselines ran on**: n/a; Keras backend `tensorflow` (a GPU machine without "
        "TensorFlow can run the same `.keras` with `--keras-backend torch` or `jax`; this run did not use them).",
        "- **CPU state**: load average (1, 5, 15 min) [0.48, 1.76, 2.56] at the start, [1.27, 1.62, 2.4] at the end "
        "(this run's own jobs included); no other process above 20% of a core at the start or the end (sampled over "
        "1 s). Other processes used 4.65 CPU-s during the 129.3 s run (0.036 cores on average, from /proc/stat minus "
        "this run's own processes).",
        "- **Contention check**: not recorded in this run.",
        "",
        "## Acceptance targets (issues 4 and 14)",
    ]
    assert "Measured in parts" not in page and "This section was measured" not in page
    # A full run's provenance (every group from one run) changes nothing on the page.
    one_run = {**base, "provenance": dict.fromkeys(run.GROUPS, run.provenance_entry(base))}
    assert render_markdown(one_run, {}) == page


def _noise(spread: float, limit: float = 1.05) -> dict:
    """A job's own ``host_noise`` (as edgeskin.bench writes it, against its fixed limit)."""
    return {"invoke_p50_over_min": {"detector": spread}, "limit": limit, "quiet": spread <= limit}


def _scripted_runner(tmp_path: Path, monkeypatch, answers: list[dict], retries: int = 2):
    """A Runner whose jobs return ``answers`` in turn (no CPU counters: only the host check can re-run)."""
    calls: list[int] = []
    queue = list(answers)

    def once(self, name, module, args, env, attempt):
        calls.append(attempt)
        return dict(queue.pop(0))

    monkeypatch.setattr(run.Runner, "_once", once)
    monkeypatch.setattr(run, "cpu_seconds", lambda: None)
    return run.Runner(tmp_path, {}, retries=retries), calls


def test_runner_runs_a_timing_job_again_when_its_host_was_busy(tmp_path: Path, monkeypatch) -> None:
    """A busy host (invokes spread well above the host's own quiet level) counts as contention even when no
    process here used the CPU."""
    busy = {"overhead_ratio": 1.17, "host_noise": _noise(1.2), "warnings": ["the host was busy: (its own)"]}
    quiet = {"overhead_ratio": 1.12, "host_noise": _noise(1.02)}
    runner, calls = _scripted_runner(tmp_path, monkeypatch, [quiet, busy, quiet])
    runner("pipeline-1t", "edgeskin.report.latency", timed=True)  # sets the host's quiet level: 1.02
    calls.clear()
    result = runner("pipeline-2t", "edgeskin.report.latency", timed=True)
    assert calls == [0, 1] and result["overhead_ratio"] == 1.12
    assert result["host_quiet_attempts"] == [False, True] and result["rerun_reasons"] == ["busy"]
    assert result["host_noise"]["host_level"] == 1.02 and result["host_noise"]["limit"] == 1.071
    # Busy every time: the retries run out and the last attempt is kept, saying so (one warning, the runner's).
    runner, calls = _scripted_runner(tmp_path, monkeypatch, [quiet, busy, busy], retries=1)
    runner("pipeline-1t", "edgeskin.report.latency", timed=True)
    result = runner("pipeline-2t", "edgeskin.report.latency", timed=True)
    assert calls == [0, 0, 1] and result["host_quiet_attempts"] == [False, False]
    assert result["rerun_reasons"] == ["busy"]
    assert [w for w in result["warnings"] if "busy" in w] == [run._host_warning_replaced([], result["host_noise"])[0]]
    assert "this host's quietest job" in result["warnings"][0]
    # An untimed job runs once whatever its result says.
    runner, calls = _scripted_runner(tmp_path, monkeypatch, [busy])
    runner("accuracy", "edgeskin.report.accuracy")
    assert calls == [0]


def test_a_host_whose_idle_invokes_spread_more_is_judged_by_its_own_level(tmp_path: Path, monkeypatch) -> None:
    """A host whose idle invokes always spread 10% (a fixed limit of 1.05 called every one of its jobs busy and ran
    each three times) runs each job once, keeps no busy warning, and the page says so in one voice."""
    steady = [
        {"overhead_ratio": 1.12, "host_noise": _noise(s), "warnings": ["the host was busy: (its own)"]}
        for s in (1.10, 1.11, 1.09, 1.12)
    ]
    runner, calls = _scripted_runner(tmp_path, monkeypatch, steady)
    results = {name: runner(name, "edgeskin.report.latency", timed=True) for name in ("a", "b", "c", "d")}
    assert calls == [0, 0, 0, 0]
    assert all(r["host_noise"]["quiet"] and not r["warnings"] for r in results.values())
    assert results["d"]["host_noise"]["host_level"] == 1.09
    line = render._contention_line({"latency": results})[0]
    assert "No job needed a re-run" in line and "ran undisturbed" in line and "quiet level (1.09" in line


def test_the_contention_line_names_busy_reruns_and_what_stayed_busy(tmp_path: Path, monkeypatch) -> None:
    quiet = {"overhead_ratio": 1.12, "host_noise": _noise(1.02)}
    busy = {"overhead_ratio": 1.17, "host_noise": _noise(1.3)}
    runner, _ = _scripted_runner(tmp_path, monkeypatch, [quiet, busy, busy, busy])
    results = {"a": runner("a", "m", timed=True), "b": runner("b", "m", timed=True)}
    line = render._contention_line({"latency": results})[0]
    assert "(at most twice;" in line  # a report that did not record its --retries allowed two
    assert "(at most once;" in render._contention_line({"latency": results, "settings": {"retries": 1}})[0]
    assert "Re-run: b (2x: busy, busy)" in line
    assert "**Still disturbed after the re-runs**: b (host busy (invoke spread 1.3))" in line
    assert "No job needed a re-run" not in line and "ran undisturbed" not in line


def test_a_job_judged_before_the_host_showed_its_quiet_level_is_judged_again_at_the_end(tmp_path, monkeypatch) -> None:
    """The first job defines the level and so passed; once a quieter job shows the host's real level, the first
    one's verdict (not re-run) says it was busy, and the page lists it."""
    first = {"overhead_ratio": 1.2, "host_noise": _noise(1.25)}
    quiet = {"overhead_ratio": 1.12, "host_noise": _noise(1.02)}
    runner, calls = _scripted_runner(tmp_path, monkeypatch, [first, quiet])
    results = {"a": runner("a", "m", timed=True), "b": runner("b", "m", timed=True)}
    assert calls == [0, 0] and results["a"]["host_noise"]["quiet"]
    runner.rejudge()
    assert not results["a"]["host_noise"]["quiet"] and results["a"]["host_noise"]["host_level"] == 1.02
    assert any(w.startswith("the host was busy") for w in results["a"]["warnings"])
    assert results["b"]["host_noise"]["quiet"] and not results["b"].get("warnings")
    line = render._contention_line({"latency": results})[0]
    assert "**Still disturbed after the re-runs**: a (host busy (invoke spread 1.25))" in line
