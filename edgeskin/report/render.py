"""The benchmark report as Markdown: one function a section, all reading the raw results dict (report.json).

Every number on the page comes from ``results``; a section whose measurement is absent says why instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from edgeskin.report.common import CONTENDED_CORES, display_path

TARGETS = {
    "end_to_end_p50_ms": 15.0,
    "overhead_ratio": 1.15,  # issue 14 (issue 4 asked for 1.3)
    "annotate_to_detect": 0.3,  # issue 14: the overlay at most 0.3x the detect stage (p50)
    "speedup_vs_ultralytics": 3.0,
    "cam_pearson_median": 0.95,
    "cam_share_of_classify": 0.05,
}


class _Check(NamedTuple):
    """How one of ``TARGETS`` is checked and shown in the acceptance table."""

    group: str  # the report's group of jobs that measures it (its provenance in a report measured in parts)
    what: str
    bound: str  # "<=": the target is a most, ">=": a least
    digits: int
    unit: str = ""
    scale: float = 1  # 100: a share shown as a percentage

    def row(self, limit: float, value: float | None) -> dict[str, Any]:
        met = None if value is None else value <= limit if self.bound == "<=" else value >= limit
        return {
            "what": self.what,
            "target": f"{self.bound} {self.scale * limit:g}{self.unit}",
            "measured": _f(None if value is None else self.scale * value, self.digits, self.unit),
            "met": met,
            "group": self.group,
        }


_CHECKS = {
    "end_to_end_p50_ms": _Check("pipeline", "End to end p50, 768x576, 2 threads, decode excluded", "<=", 2, " ms"),
    "overhead_ratio": _Check("pipeline", "overhead_ratio (end-to-end p50 / summed bare invoke p50)", "<=", 3),
    "speedup_vs_ultralytics": _Check(
        "peers", "Speed-up over ultralytics predict on the same INT8 .tflite (same threads)", ">=", 2, "x"
    ),
    "cam_pearson_median": _Check("cam", "INT8 CAM vs exact Grad-CAM, median Pearson (6x6 grid, same class)", ">=", 3),
    "cam_share_of_classify": _Check("pipeline", "CAM cost / classify stage (pipeline p50)", "<=", 2, "%", 100),
    "annotate_to_detect": _Check(
        "pipeline", "annotate p50 / detect p50, 768x576 (the overlay against detection)", "<=", 3
    ),
}
DEVICES_TO_FILL = ("rpi4", "rpi5", "rpi5-coral-usb", "coral-devboard")
# The report's groups of jobs (edgeskin.report.run.GROUPS, in its order), as the page names them.
GROUP_TITLES = {
    "pipeline": "pipeline rows",
    "models": "model rows",
    "peers": "peers",
    "accuracy": "accuracy",
    "cam": "CAM fidelity",
}


def _f(value: Any, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}{suffix}"
    return str(value)


def _ratio(a: Any, b: Any, digits: int = 2) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "n/a"
    return f"{a / b:.{digits}f}x"


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def acceptance(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's acceptance targets with this run's measurements."""
    pipeline = results.get("latency", {}).get(f"pipeline-{results['settings']['threads']}t", {})
    peers = results.get("peers", {})
    cam = results.get("cam", {})
    e2e = pipeline.get("end_to_end_ms", {}).get("p50")
    ratio = pipeline.get("overhead_ratio")
    adapted = peers.get("ultralytics_adapted", {})
    speedup = adapted.get("speedup_ours_vs_ultralytics_p50")
    pearson = cam.get("metrics", {}).get("same_class", {}).get("pearson_grid", {}).get("median")
    share = pipeline.get("cam_share_of_classify")
    stages = pipeline.get("stages_ms", {})
    annotate_p50, detect_p50 = stages.get("annotate", {}).get("p50"), stages.get("detect", {}).get("p50")
    overlay = annotate_p50 / detect_p50 if annotate_p50 is not None and detect_p50 else None
    measured = {
        "end_to_end_p50_ms": e2e,
        "overhead_ratio": ratio,
        "speedup_vs_ultralytics": speedup,
        "cam_pearson_median": pearson,
        "cam_share_of_classify": share,
        "annotate_to_detect": overlay,
    }
    return [_CHECKS[key].row(TARGETS[key], value) for key, value in measured.items()]


def missing_items(results: dict[str, Any]) -> list[str]:
    """Everything that could not be measured in this run, with the reason."""
    items = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "missing" in node and isinstance(node["missing"], str):
                items.append(f"{where}: {node['missing']}")
                return
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else key)

    walk(results, "")
    return items


def _gpu_float_section(gpu: dict[str, Any], int8: dict[str, Any]) -> list[str]:
    """The float classifiers trained and scored on a GPU machine (stored results, re-scored here)."""
    if not gpu:
        return []
    if "missing" in gpu:
        return [f"Float baselines on a GPU: not available ({gpu['missing']}).", ""]
    lines = [
        f"### Classifier float baselines on a GPU ({gpu.get('date')}, from `{gpu.get('file')}`)",
        "",
        f"Made by {gpu.get('made_by')}. That machine is not part of this run: its stored probabilities on the "
        "same validation images are scored again here with the same metrics and triage threshold; the latency "
        "columns are the GPU's own (Keras 3, torch backend, float32; batch 1 includes the copy back to the host).",
        "",
        "| model | weights | epochs | device | size MB | balanced acc | AUC (ovr) | malignant sens. | malignant spec. "
        "| batch-1 p50 / p90 ms | batch-64 images/s | INT8 bal. acc / this |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in gpu.get("rows", {}).items():
        if "missing" in row:
            lines.append(f"| {name} | {row['missing']} | | | | | | | | | | |")
            continue
        lat = row.get("latency") or {}
        title = f"{row.get('backbone')} {row.get('alpha') or ''}@{row.get('input_size')}".replace(" @", "@")
        lines.append(
            f"| {name}: {title} | {row.get('weights')} | {row.get('epochs')} | {row.get('device')} | "
            f"{_f(row.get('size_mb'), 2)} | {_f(row.get('balanced_accuracy'))} | {_f(row.get('auc'))} | "
            f"{_f(row.get('malignant_sensitivity'))} | {_f(row.get('malignant_specificity'))} | "
            f"{_f(lat.get('batch1_p50_ms'), 1)} / {_f(lat.get('batch1_p90_ms'), 1)} | {_f(lat.get('batch64_images_per_s'), 0)} | "
            f"{_ratio(int8.get('balanced_accuracy'), row.get('balanced_accuracy'))} |"
        )
    notes = [f"{name}: {row['note']}" for name, row in gpu.get("rows", {}).items() if row.get("note")]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    delta = gpu.get("int8_vs_gpu_float")
    if delta:
        lines += [
            "",
            f"Shipped INT8 against its own float model (row {delta.get('float_row')}, scored on the GPU): top-1 agreement {_f(delta['top1_agreement'])}, "
            f"balanced accuracy {delta['balanced_accuracy_delta_points']:+.2f} points, AUC {delta['auc_delta']:+.4f} "
            "(INT8 as deployed, with its test-time views; the GPU rows are one view each, so this mixes the two "
            "effects: the like-for-like INT8-vs-float figures are in the model card).",
        ]
    return lines + [""]


def _latency_rows(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    latency = results.get("latency", {})
    return [
        ("classifier", "INT8 TFLite (edge)", latency.get("classifier-int8", {}), "int8"),
        ("classifier", "float16 TFLite", latency.get("classifier-float16", {}), "float"),
        ("classifier", "float32 TFLite", latency.get("classifier-float32", {}), "float"),
        ("classifier", "float Keras (baseline)", latency.get("classifier-keras", {}), "float"),
        ("detector", "INT8 TFLite (edge)", latency.get("detector-int8", {}), "int8"),
        ("detector", "float16 TFLite", latency.get("detector-float16", {}), "float"),
        ("detector", "float32 TFLite", latency.get("detector-float32", {}), "float"),
        ("detector", "float PyTorch, ultralytics (baseline)", latency.get("detector-torch", {}), "float"),
    ]


def _float_device(results: dict[str, Any]) -> str:
    """Where the float baselines ran ("n/a" when none did)."""
    accuracy = results.get("accuracy", {})
    cls_rows = accuracy.get("classifier", {}).get("rows", {})
    det_rows = accuracy.get("detector", {}).get("rows", {})
    return cls_rows.get("float_keras", {}).get("device") or det_rows.get("float_pytorch", {}).get("device") or "n/a"


def _parts(results: dict[str, Any]) -> list[tuple[list[str], dict[str, Any]]]:
    """The groups measured together (one date and device id), newest first, each with its provenance entry.

    Empty for a report without ``provenance`` (made before it was recorded: one run measured everything).
    """
    parts: list[tuple[list[str], dict[str, Any]]] = []
    for group, entry in (results.get("provenance") or {}).items():
        same = [groups for groups, first in parts if _same_run(first, entry)]
        if same:
            same[0].append(group)
        else:
            parts.append(([group], entry))
    return sorted(parts, key=lambda part: str(part[1].get("date")), reverse=True)


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("date"), a.get("device_id")) == (b.get("date"), b.get("device_id"))


def _titles(groups: list[str]) -> str:
    names = [GROUP_TITLES.get(group, group) for group in groups]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _where(entry: dict[str, Any]) -> str:
    return f"{entry.get('date')} (UTC) on `{entry.get('device_id')}` ({entry.get('cpu') or 'CPU not recorded'})"


def _across(entries: list[dict[str, Any]]) -> str:
    return "machines" if len({entry.get("device_id") for entry in entries}) > 1 else "runs"


def _mixed(results: dict[str, Any], group: str, other: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The provenance entries of ``group`` and ``other`` when they come from different runs, else None."""
    provenance = results.get("provenance") or {}
    a, b = provenance.get(group), provenance.get(other)
    return (a, b) if a and b and not _same_run(a, b) else None


def _part_note(results: dict[str, Any], group: str) -> list[str]:
    """Under a section's heading, in a report measured in parts: where and when that section was measured."""
    entry = (results.get("provenance") or {}).get(group)
    if entry is None or len(_parts(results)) < 2:
        return []
    return [f"*This section was measured {_where(entry)}* (see *Measured in parts* above).", ""]


def _heading(results: dict[str, Any], title: str, group: str) -> list[str]:
    """A section's heading, then (in a report measured in parts) where and when its ``group`` was measured."""
    return [f"## {title}", "", *_part_note(results, group)]


def _figure(plots: dict[str, Path | None], key: str, file: str, alt: str | None = None) -> list[str]:
    """The Markdown image of plot ``key`` when it was drawn."""
    return [f"![{alt or key}]({file})", ""] if plots.get(key) else []


def _parts_lines(results: dict[str, Any]) -> list[str]:
    """The header's *Measured in parts* bullet, one line per part, or nothing for a report measured in one run."""
    parts = _parts(results)
    if len(parts) < 2:
        return []
    lines = [
        "- **Measured in parts**, one line per run; comparisons between rows of different parts are across "
        f"{_across([entry for _, entry in parts])}:"
    ]
    for groups, entry in parts:
        share = entry.get("other_processes_cpu") or {}
        lines.append(
            f"  - {_titles(groups)}: {_where(entry)}, by `{str(entry.get('command')).strip()}`; load average at the "
            f"start {entry.get('load_average_at_start')}"
            + (f", other processes {share['average_cores']} cores on average" if "average_cores" in share else "")
            + "."
        )
    return lines


def _header_section(results: dict[str, Any]) -> list[str]:
    """Title, date, machine, runtime and CPU state of the run."""
    machine = results.get("machine", {})
    settings = results["settings"]
    threads = settings["threads"]
    lines: list[str] = ["# edgeskin benchmark report", ""]
    load_start, load_end = results.get("load_average_at_start"), results.get("load_average_at_end")
    # The end load includes this run's own jobs; other processes are sampled from /proc at both ends.
    others = [
        *(results.get("other_busy_processes_at_start") or []),
        *(results.get("other_busy_processes_at_end") or []),
    ]
    share = results.get("other_processes_cpu") or {}
    busy = bool(others) or share.get("average_cores", 0.0) > 0.1
    float_device = _float_device(results)
    # Measured in parts: the lines below describe the latest run, the one that wrote this header.
    parts_lines = _parts_lines(results)
    latest = [groups for groups, entry in _parts(results) if _same_run(entry, results)]
    scope = f" ({_titles(latest[0])})" if parts_lines and latest else ""
    lines += parts_lines
    lines += [
        f"- **Measured**{scope}: {results['date']} (UTC), one run of `{settings['command'].strip()}`"
        f"{' (' + str(round(sum(results.get('job_seconds', {}).values()))) + ' s)' if results.get('job_seconds') else ''}.",
        f"- **Machine**{scope}: {machine.get('cpu_model')} ({machine.get('machine')}), {machine.get('cores')} cores, "
        f"{'INT8 extensions ' + (', '.join(machine['cpu_features']) or 'none listed') + ', ' if 'cpu_features' in machine else ''}"
        f"CPU governor {machine.get('governor')}, {machine.get('system')}, Python {machine.get('python')}; "
        f"device id `{results.get('device_id')}`.",
        f"- **Edge runtime**{scope}: {machine.get('interpreter', {}).get('package')} {machine.get('interpreter', {}).get('version')}, "
        f"CPU (XNNPACK), {threads} threads unless stated; no Edge TPU.",
        f"- **Float baselines ran on**: {float_device}; Keras backend `{settings['keras_backend']}`"
        " (a GPU machine without TensorFlow can run the same `.keras` with `--keras-backend torch` or `jax`; "
        "this run did not use them).",
        f"- **CPU state**{scope}: load average (1, 5, 15 min) {load_start} at the start, {load_end} at the end (this run's "
        "own jobs included)"
        + (
            f" — **other processes were running ({'; '.join(others) or 'see below'}), latencies are inflated**."
            if busy
            else "; no other process above 20% of a core at the start or the end (sampled over 1 s)."
        )
        + (
            f" Other processes used {share['cpu_seconds']} CPU-s during the {share['wall_seconds']} s run "
            f"({share['average_cores']} cores on average, from /proc/stat minus this run's own processes)."
            if share
            else ""
        ),
        "",
    ]
    return lines


def _contention_line(results: dict[str, Any]) -> list[str]:
    """One bullet: which timing jobs were re-run, why (other processes, or a busy host), and which stayed so."""
    timed_jobs = {**results.get("latency", {}), "peers": results.get("peers", {})}
    reruns = {k: _rerun_counts(v) for k, v in timed_jobs.items() if len(v.get("contention_attempts") or []) > 1}
    still = {
        k: f"{v['other_processes_cpu']['average_cores']} cores used by others"
        for k, v in timed_jobs.items()
        if (v.get("other_processes_cpu") or {}).get("average_cores", 0.0) > CONTENDED_CORES
    }
    for k, v in timed_jobs.items():
        noise = v.get("host_noise") or {}
        final = noise.get("quiet") if "host_level" in noise else (v.get("host_quiet_attempts") or [None])[-1]
        if final is False and k not in still:
            spread = max((v.get("host_noise") or {}).get("invoke_p50_over_min", {}).values(), default=None)
            still[k] = f"host busy (invoke spread {spread})"
    if not any("contention_attempts" in v for v in timed_jobs.values()):
        return ["- **Contention check**: not recorded in this run."]
    # The host's level only falls as the run goes on: the last job's verdict used the lowest.
    judged = min(
        (v["host_noise"] for v in timed_jobs.values() if "host_level" in (v.get("host_noise") or {})),
        key=lambda noise: noise["host_level"],
        default=None,
    )
    host = (
        f"or whose bare invokes' p50 / fastest call exceeded this host's quiet level ({judged['host_level']}, the "
        f"lowest of this run's jobs) by more than {round(100 * (judged['limit'] / judged['host_level'] - 1))}% "
        if judged
        else ""
    )
    return [
        f"- **Contention check**: a timing job during which other processes used more than {CONTENDED_CORES} "
        f"of a core on average {host}is run again ({_at_most(results)}; all attempts in report.json). "
        + (f"Re-run: {', '.join(f'{k} ({n})' for k, n in reruns.items())}. " if reruns else "No job needed a re-run. ")
        + (
            f"**Still disturbed after the re-runs**: {', '.join(f'{k} ({why})' for k, why in still.items())}."
            if still
            else "Every timing job used here ran undisturbed by that measure."
        )
    ]


def _at_most(results: dict[str, Any]) -> str:
    """How many re-runs the run allowed (reports before 2026-12-07 did not record it: they allowed two)."""
    retries = results.get("settings", {}).get("retries", 2)
    return {0: "not at all: --retries 0", 1: "at most once", 2: "at most twice"}.get(
        retries, f"at most {retries} times"
    )


def _rerun_counts(job: dict[str, Any]) -> str:
    """``2x: busy, contended``: how often a job was re-run, and why each time (reasons recorded since 2026-12-07)."""
    count = len(job["contention_attempts"]) - 1
    reasons = job.get("rerun_reasons")
    return f"{count}x" + (f": {', '.join(reasons)}" if reasons else "")


def _acceptance_section(results: dict[str, Any]) -> list[str]:
    """The issue's targets against this run's measurements."""
    lines: list[str] = []
    lines += ["## Acceptance targets (issues 4 and 14)", ""]
    provenance = results.get("provenance") or {}
    if len(_parts(results)) < 2:
        lines += ["| what | target | measured | met |", "|---|---|---|---|"]
        for row in acceptance(results):
            lines.append(f"| {row['what']} | {row['target']} | {row['measured']} | {_ok(row['met'])} |")
    else:  # measured in parts: each row says on which machine, and when
        lines += ["| what | target | measured | met | measured on |", "|---|---|---|---|---|"]
        for row in acceptance(results):
            entry = provenance.get(row["group"], {})
            where = f"`{entry.get('device_id')}`, {str(entry.get('date'))[:10]}" if entry else "n/a"
            lines.append(f"| {row['what']} | {row['target']} | {row['measured']} | {_ok(row['met'])} | {where} |")
    lines.append("")
    return lines


CLASSIFIER_ROWS = {
    "float_keras": "MobileNetV2 float Keras (baseline)",
    "int8_tflite": "MobileNetV2 INT8 TFLite (edge, as deployed)",
    "int8_tflite_uncalibrated": "MobileNetV2 INT8 TFLite, T = 1",
    "float_resnet50": "ResNet50 float",
    "float_efficientnetb0": "EfficientNetB0 float",
}
DETECTOR_ROWS = {
    "float_pytorch": "YOLOv5n float, ultralytics PyTorch (baseline)",
    "int8_tflite": "YOLOv5n INT8 TFLite, edgeskin Detector (edge)",
    "classical": "classical localiser (no model)",
}


def _model_rows(
    rows: dict[str, Any],
    names: dict[str, str],
    columns: list[tuple[str, Callable[[Any], str]]],
    ratios: list[str],
    reference: str,
) -> list[str]:
    """An accuracy table's body, one row per model of ``names`` in its order.

    A measured model: name, device, size MB, each of ``columns`` as its function writes it, then for an INT8 model
    its ``ratios`` to the ``reference`` row (empty cells for the others). A model not measured: the first clause
    of why (the whole reason is listed under *What is missing*).
    """
    ref = rows.get(reference, {})
    lines = []
    for key, name in names.items():
        row = rows.get(key, {})
        if "missing" in row:
            reason = row["missing"].split(";")[0] + (" (why: see *What is missing*)" if ";" in row["missing"] else "")
            lines.append(f"| {name} | — | — | {reason} |" + " |" * (len(columns) + len(ratios) - 1))
            continue
        cells = [str(row.get("device")), _f(row.get("size_mb"), 2), *(write(row.get(c)) for c, write in columns)]
        cells += [_ratio(row.get(c), ref.get(c)) if key.startswith("int8") else "" for c in ratios]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _not_measured(part: dict[str, Any], what: str = "Not measured") -> list[str]:
    """The paragraph saying why ``part`` was not measured."""
    return [f"{what}: {part.get('missing', 'unknown')}", ""]


def _agreement(part: dict[str, Any], sentence: Callable[[dict[str, Any]], str]) -> list[str]:
    """The INT8-vs-float agreement of ``part`` as a paragraph, when it was measured."""
    return ["", sentence(part["int8_vs_float"])] if part.get("int8_vs_float") else []


def _classifier_accuracy(cls: dict[str, Any]) -> list[str]:
    if "rows" not in cls:
        return _not_measured(cls, "Classifier accuracy not measured") if "missing" in cls else []
    metrics = ["balanced_accuracy", "auc", "malignant_sensitivity", "malignant_specificity"]
    return [
        f"### Classifier — internal validation split, {cls.get('images')} images ({cls.get('split')})",
        "",
        f"Malignant sensitivity/specificity at the spec's triage threshold {_f(cls.get('triage_threshold'), 4)} "
        f"({cls.get('threshold_note')}).",
        "",
        "| model | device | size MB | balanced acc | AUC (ovr) | malignant sens. | malignant spec. | bal. acc INT8/float | AUC INT8/float |",
        "|---|---|---|---|---|---|---|---|---|",
        *_model_rows(cls["rows"], CLASSIFIER_ROWS, [(m, _f) for m in metrics], metrics[:2], "float_keras"),
        *_agreement(
            cls,
            lambda a: (
                f"INT8 vs float top-1 agreement {_f(a.get('top1_agreement'))}, mean |p_float - p_int8(T=1)| "
                f"{_f(a.get('mean_abs_probability_difference'), 4)}."
            ),
        ),
        "",
        *_gpu_float_section(cls.get("gpu_float", {}), cls["rows"].get("int8_tflite", {})),
    ]


def _detector_accuracy(det: dict[str, Any]) -> list[str]:
    if "rows" not in det:
        return _not_measured(det, "Detector accuracy not measured") if "missing" in det else []
    columns = [(m, _f) for m in ("mean_iou", "median_iou", "iou50_rate", "map50")] + [("no_box", str)]
    return [
        f"### Detector — held-out PH2 images, {det.get('images')} ({det.get('split')})",
        "",
        f"{det.get('definitions')}.",
        "",
        "| model | device | size MB | mean IoU | median IoU | IoU >= 0.5 | mAP50 | no box | mean IoU INT8/float |",
        "|---|---|---|---|---|---|---|---|---|",
        *_model_rows(det["rows"], DETECTOR_ROWS, columns, ["mean_iou"], "float_pytorch"),
        *_agreement(
            det,
            lambda a: (
                f"Float vs INT8 top boxes: mean IoU {_f(a.get('mean_top_box_iou_float_vs_int8'))}, "
                f"share with IoU >= 0.9 {_f(a.get('share_top_boxes_iou_ge_0.9'))}."
            ),
        ),
        "",
    ]


def _accuracy_section(results: dict[str, Any], plots: dict[str, Path | None]) -> list[str]:
    """Classifier and detector accuracy, INT8 against float."""
    accuracy = results.get("accuracy", {})
    lines = [
        *_heading(results, "Accuracy: edge INT8 against the float baseline", "accuracy"),
        *_classifier_accuracy(accuracy.get("classifier", {})),
        *_detector_accuracy(accuracy.get("detector", {})),
    ]
    return [*lines, *_figure(plots, "accuracy", "accuracy.png")]


def _latency_section(results: dict[str, Any], plots: dict[str, Path | None]) -> list[str]:
    """Each model alone: edge INT8 against the float baselines."""
    threads = results["settings"]["threads"]
    lines = _heading(results, f"Latency: edge INT8 against the float baselines ({threads} threads)", "models")
    mixed = _mixed(results, "models", "pipeline")
    if mixed:
        models_entry, pipeline_entry = mixed
        lines += [
            f"**Measured on different {_across(list(mixed))}**: the model rows here on `{models_entry.get('device_id')}` "
            f"({models_entry.get('date')}), the pipeline rows of the next section"
            f"{' and in the plot title' if plots.get('latency') else ''} on `{pipeline_entry.get('device_id')}` "
            f"({pipeline_entry.get('date')}): a comparison between them is across {_across(list(mixed))}.",
            "",
        ]
    lines += [
        "Each row is its own process (peak RSS = that process: interpreter, numpy, OpenCV, and for the baselines "
        "TensorFlow or PyTorch). Times are per decoded image, including the model's own pre- and post-processing; "
        "classifier rows run on HAM10000 validation images, detector rows on PH2 validation frames.",
        "",
        "| task | model | p50 ms | p90 ms | FPS | invoke p50 ms (inside the call) | size MB | peak RSS MiB | p50 vs INT8 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    int8_p50 = {}
    for task, _name, row, kind in _latency_rows(results):
        if kind == "int8" and "latency_ms" in row:
            int8_p50[task] = row["latency_ms"]["p50"]
    for task, name, row, _ in _latency_rows(results):
        if "latency_ms" not in row:
            lines.append(f"| {task} | {name} | {row.get('missing', 'not measured')} | | | | | | |")
            continue
        stats = row["latency_ms"]
        extra = f" ({row['device']})" if row.get("device") else ""
        lines.append(
            f"| {task} | {name}{extra} | {_f(stats['p50'], 2)} | {_f(stats['p90'], 2)} | {_f(row['fps'], 1)} | "
            f"{_f(row.get('invoke_ms', {}).get('p50'), 2)} | {_f(row.get('model_size_mb'), 2)} | {_f(row.get('peak_rss_mb'), 0)} | "
            f"{_ratio(stats['p50'], int8_p50.get(task))} |"
        )
    return [*lines, "", *_figure(plots, "latency", "latency.png")]


def _pipeline_section(results: dict[str, Any], plots: dict[str, Path | None]) -> list[str]:
    """The INT8 pipeline end to end, per frame size and thread count, and its stages."""
    threads = results["settings"]["threads"]
    latency = results.get("latency", {})
    lines = [
        *_heading(results, "The INT8 pipeline end to end", "pipeline"),
        "`LesionPipeline.predict` on a PH2 frame resized to the given size and held in memory (file decode excluded; "
        "decode is timed apart). Bare invoke = `interpreter.invoke()` of separate interpreters fed this frame's own "
        "tensors, interleaved with the predict calls. overhead ratio = end-to-end p50 / the summed bare invoke p50 "
        "of the invokes one frame makes: the detector's and the classifier's as made (every test-time view of every "
        "lesion in one batch, timed bare at that batch size; the classifier column is that batch invoke).",
        "",
        "| frame | threads | end-to-end p50 ms | p90 ms | FPS | detector invoke p50 | classifier invoke p50 | lesions | overhead ratio | overhead ms | CAM / classify | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pipeline_keys = [f"pipeline-{n}t" for n in (1, 2, 4)] + [
        k for k in latency if k.startswith("pipeline-") and k[-1] != "t"
    ]
    for key in pipeline_keys:
        row = latency.get(key, {})
        if "end_to_end_ms" not in row:
            lines.append(f"| {key} | | {row.get('missing', 'not measured')} | | | | | | | | | |")
            continue
        size = row["settings"]["frame"]["size"]
        share = row.get("cam_share_of_classify")
        lines.append(
            f"| {size[0]}x{size[1]} | {row['settings']['threads']} | {_f(row['end_to_end_ms']['p50'], 2)} | "
            f"{_f(row['end_to_end_ms']['p90'], 2)} | {_f(row['fps'], 1)} | {_f(row['invoke_ms']['detector']['p50'], 2)} | "
            f"{_f(row['invoke_ms']['classifier']['p50'], 2)} | {row['lesions_per_frame']:g} | {_f(row['overhead_ratio'], 3)} | "
            f"{_f(row['overhead_ms'], 2)} | {_f(None if share is None else 100 * share, 2, '%')} | {_f(row['peak_rss_mb'], 0)} |"
        )
    main_row = latency.get(f"pipeline-{threads}t", {})
    if "stages_ms" in main_row:
        from edgeskin.bench import _ordered

        lines += [
            "",
            f"Stages at {threads} threads, 768x576 (p50 / p90 ms; `detect.*`, `classify.*` are the model "
            "wrappers' own sub-stages, `classify.*` for all the lesions of the frame together):",
            "",
            "| stage | p50 | p90 |",
            "|---|---|---|",
        ]
        for name in _ordered(list(main_row["stages_ms"])):
            stats = main_row["stages_ms"][name]
            lines.append(f"| {name} | {_f(stats['p50'], 3)} | {_f(stats['p90'], 3)} |")
        lines.append("")
        for warning in main_row.get("warnings", []):
            lines.append(f"- note: {warning}")
        lines.append("")
    return [*lines, *_figure(plots, "stages", "pipeline_stages.png", "pipeline stages")]


def _peers_section(results: dict[str, Any]) -> list[str]:
    """Ultralytics' predict against our Detector on the same INT8 file."""
    threads = results["settings"]["threads"]
    main_row = results.get("latency", {}).get(f"pipeline-{threads}t", {})
    peers = results.get("peers", {})
    lines = _heading(results, "Peers, same run", "peers")
    if "ours" not in peers:
        return [*lines, *_not_measured(peers)]
    lines += [
        f"Ultralytics {peers.get('ultralytics_version')} `YOLO('{peers['model']}').predict` against edgeskin's `Detector.detect` on "
        f"the same INT8 file and the same {peers['images']} decoded PH2 frames, interleaved call by call, "
        f"{peers['runs']} runs each. Ultralytics' LiteRT backend quantizes the [0, 1]-scaled image with the input "
        "tensor's scale; edgeskin's detector folds /255 into the graph (input scale 1), so unchanged ultralytics "
        "feeds the wrong integers (its boxes disagree, see the agreement column); *adapted* divides the scale it "
        "reads by 255 and then agrees with ours. Ultralytics' thread default is cores - 1."
        + (f" The file: {peers['model_note']}." if peers.get("model_note") else ""),
        "",
        "| detector call | interpreter threads | p50 ms | p90 ms | FPS | ours faster by (p50) | top-box IoU with ours | ultralytics pre / inference / post ms |",
        "|---|---|---|---|---|---|---|---|",
        f"| edgeskin Detector.detect | {peers['threads']} | {_f(peers['ours']['latency_ms']['p50'], 2)} | "
        f"{_f(peers['ours']['latency_ms']['p90'], 2)} | {_f(peers['ours']['fps'], 1)} | — | — | — |",
    ]
    for variant, label in (
        ("as_is", "ultralytics predict, unchanged"),
        ("adapted", "ultralytics predict, input scale adapted"),
        ("adapted_default_threads", "ultralytics predict, adapted, its default threads"),
    ):
        row = peers.get(f"ultralytics_{variant}")
        if not row:
            continue
        speed = row["speed_breakdown_ms_median"]
        lines.append(
            f"| {label} | {row['interpreter_threads']} | {_f(row['latency_ms']['p50'], 2)} | {_f(row['latency_ms']['p90'], 2)} | "
            f"{_f(row['fps'], 1)} | {_f(row['speedup_ours_vs_ultralytics_p50'], 2, 'x')} | {_f(row['agreement_top_box_iou_mean'], 3)} | "
            f"{_f(speed.get('preprocess'), 2)} / {_f(speed.get('inference'), 2)} / {_f(speed.get('postprocess'), 2)} |"
        )
    if "end_to_end_ms" in main_row:
        mixed = _mixed(results, "pipeline", "peers")
        lines += [
            "",
            (f"(Pipeline rows, measured {_where(mixed[0])}.) " if mixed else "")
            + f"Our whole pipeline against its bare `invoke()` times ({threads} threads): end-to-end p50 "
            f"{_f(main_row['end_to_end_ms']['p50'], 2)} ms vs summed invoke p50 "
            f"{_f(main_row['end_to_end_ms']['p50'] - main_row['overhead_ms'], 2)} ms: ratio "
            f"{_f(main_row['overhead_ratio'], 3)}, {_f(main_row['overhead_ms'], 2)} ms outside the models.",
        ]
    return [*lines, ""]


def _cam_section(results: dict[str, Any]) -> list[str]:
    """INT8 CAM against exact Grad-CAM, and the CAM's cost."""
    cam = results.get("cam", {})
    lines = _heading(results, "CAM fidelity: INT8 CAM against exact Grad-CAM", "cam")
    if "metrics" not in cam or "cost" not in cam:
        return [*lines, *_not_measured(cam)]
    check = cam.get("reference_check_grad_cam_vs_analytic_float_cam_pearson", {})
    lines += [
        f"{cam['images']} HAM10000 validation images (seeded subset). Reference: {cam['reference']} "
        f"(Keras backend {cam['keras_backend']}; check: Grad-CAM vs the analytic float CAM, Pearson median "
        f"{_f(check.get('median'), 4)}, min {_f(check.get('min'), 4)}). Edge: `CamExplainer` on the INT8 feature map. "
        f"INT8 and float agree on the top class for {_f(100 * cam['int8_float_same_top_class'], 1)}% of the images. "
        "Top-20% IoU: IoU of the ceil(0.2 N) highest cells of each map. Constant maps (undefined correlation) are counted and left out.",
        "",
        "| class explained | comparison | median | mean | p10 | min | share >= 0.95 | n (undefined) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    titles = {
        "pearson_grid": "Pearson, 6x6 grid",
        "pearson_192": "Pearson, upsampled 192x192",
        "top20_iou_grid": "top-20% IoU, 6x6 grid",
        "top20_iou_192": "top-20% IoU, 192x192",
    }
    for view, label in (
        ("same_class", "float top class (both)"),
        ("as_deployed", "INT8's own top class (as shown)"),
    ):
        for metric, title in titles.items():
            s = cam["metrics"][view][metric]
            lines.append(
                f"| {label} | {title} | {_f(s.get('median'))} | {_f(s.get('mean'))} | {_f(s.get('p10'))} | "
                f"{_f(s.get('min'))} | {_f(s.get('share_ge_0.95'))} | {s.get('n')} ({s.get('undefined')}) |"
            )
    cost = cam["cost"]
    lines += [
        "",
        f"CAM cost: {_f(cost['cam_ms']['p50'], 4)} ms p50 against {_f(cost['classify_with_features_ms']['p50'], 3)} ms "
        f"for classify_with_features on the same images: {_f(100 * cost['cam_share_of_classify_p50'], 2)}%.",
    ]
    return [*lines, ""]


def _reference_lines(reference_dir: Path | None) -> tuple[list[str], list[str]]:
    """The per-device reference section, and the devices whose results are absent."""
    if reference_dir is None:
        return ["## Per-device reference results", "", "No reference folder was given (--reference-dir).", ""], []
    shown = display_path(reference_dir)
    present = sorted(p.stem for p in reference_dir.glob("*.json"))
    absent = [d for d in DEVICES_TO_FILL if d not in present]
    return [
        "## Per-device reference results",
        "",
        f"`{shown}/<device>.json` (the JSON of `edgeskin bench`): present here: {', '.join(present) or 'none'}. "
        f"Not measured (no such device here): {', '.join(absent)}. On the device, with PH2's `IMD002.jpg` (the "
        "frame of every reference file):",
        "",
        "```sh",
        "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
        f"edgeskin bench --threads 4 --image IMD002.jpg --json {shown}/$(edgeskin bench --device-id).json",
        "```",
        "",
    ], absent


def _closing_sections(results: dict[str, Any], reference_dir: Path | None) -> list[str]:
    """Per-device references, what is missing and why, and how to reproduce."""
    accuracy = results.get("accuracy", {})
    float_device = _float_device(results)
    lines, absent = _reference_lines(reference_dir)
    lines += ["## What is missing, and why", ""]
    missing = missing_items(results)
    if absent:
        missing.append(
            f"reference results for {', '.join(absent)}: no such device here; the command above fills them in on the device"
        )
    if float_device.startswith("CPU"):
        gpu_file = accuracy.get("classifier", {}).get("gpu_float", {}).get("file")
        missing.insert(
            0,
            "GPU float baseline in this run: no GPU on this machine; the float models ran on the CPU (rows say so)"
            + (f"; the classifier's GPU rows come from a GPU run stored in {gpu_file}" if gpu_file else ""),
        )
    lines += [f"- {item}" for item in missing] or ["- nothing"]
    lines += [
        "",
        "## Reproduce",
        "",
        "```sh",
        f"{results['settings']['command'].strip()}   # this page",
        "edgeskin bench --json out.json   # the quick suite alone",
        "pytest benchmarks [--full]       # pytest-benchmark suites (in a source checkout)",
        "```",
        "",
        "Raw numbers of this run: [report.json](report.json).",
        "",
    ]
    return lines


def render_markdown(results: dict[str, Any], plots: dict[str, Path | None], reference_dir: Path | None = None) -> str:
    """The report page from the raw ``results`` (report.json), the plots written beside it and the folder of the
    per-device reference results (None: not given, the page says so)."""
    lines = _header_section(results)
    if "missing_models" in results:
        return "\n".join(lines + [f"**Nothing measured**: {results['missing_models']}", ""])
    lines[-1:-1] = _contention_line(results)
    for section in (
        _acceptance_section(results),
        _accuracy_section(results, plots),
        _latency_section(results, plots),
        _pipeline_section(results, plots),
        _peers_section(results),
        _cam_section(results),
        _closing_sections(results, reference_dir),
    ):
        lines += section
    return "\n".join(lines)
