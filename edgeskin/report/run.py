"""The benchmark report: accuracy and latency of the edge INT8 models against their float baselines.

``python -m benchmarks.report [--out docs/benchmarks] [--full]`` (or ``edgeskin bench report``) runs, in this
order and each in its own process (so that each peak RSS is its own and TensorFlow / PyTorch never share a
process with the measured edge runtime):

1. float TFLite companions of the edge models (:mod:`benchmarks.export_float`);
2. latency: the edge pipeline at 1, 2 and 4 threads and at the device profiles' frame sizes; each model
   alone as INT8, float16 and float32 TFLite; the float Keras classifier; the float ultralytics detector
   (:mod:`benchmarks.latency`);
3. peers: ultralytics' ``YOLO(<same .tflite>).predict`` against our Detector (:mod:`benchmarks.peers`);
4. accuracy on the validation images, INT8 against float (:mod:`benchmarks.accuracy`);
5. CAM fidelity against exact Grad-CAM (:mod:`benchmarks.cam_fidelity`);

then writes ``report.md``, ``report.json`` (every number, raw) and PNG plots into ``--out``. Every number in
the page comes from this run; whatever could not be measured is listed with the reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import BENCH_ARTIFACTS, Missing, float_tflite_paths, models  # noqa: E402

TARGETS = {
    "end_to_end_p50_ms": 15.0,
    "overhead_ratio": 1.3,
    "speedup_vs_ultralytics": 3.0,
    "cam_pearson_median": 0.95,
    "cam_share_of_classify": 0.05,
}
DEVICES_TO_FILL = ("rpi4", "rpi5", "rpi5-coral-usb", "coral-devboard")


# --------------------------------------------------------------------------------------------------
# Running the jobs
# --------------------------------------------------------------------------------------------------


class Runner:
    """Runs ``python -m <module> ... --out FILE`` in a subprocess and returns its JSON (or why it failed).

    Timing jobs (``timed=True``) are watched for other processes: the CPU time the rest of the machine used
    while the job ran (:func:`other_cpu_share`) goes into the result as ``other_processes_cpu``. A timing job
    during which others used more than ``CONTENDED_CORES`` of a core on average is run again, at most
    ``retries`` times; every attempt's share is kept (``contention_attempts``) and the last result is used.
    """

    CONTENDED_CORES = 0.1

    def __init__(self, log_dir: Path, env: dict[str, str], retries: int = 2) -> None:
        self.log_dir = log_dir
        self.env = env
        self.retries = retries
        self.timings: dict[str, float] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def __call__(
        self, name: str, module: str, *args: str, env: dict[str, str] | None = None, timed: bool = False
    ) -> dict[str, Any]:
        attempts: list[dict[str, float] | None] = []
        for attempt in range(1 + (self.retries if timed else 0)):
            before = cpu_seconds()
            result = self._once(name, module, args, env, attempt)
            share = other_cpu_share(before, cpu_seconds())
            attempts.append(share)
            contended = share is not None and share["average_cores"] > self.CONTENDED_CORES
            if not timed or "missing" in result or not contended:
                break
            print(f"  ({name}: other processes used {share['average_cores']} cores meanwhile: again)", file=sys.stderr)
        if timed and "missing" not in result:
            result["other_processes_cpu"] = attempts[-1]
            result["contention_attempts"] = attempts
        return result

    def _once(
        self, name: str, module: str, args: tuple[str, ...], env: dict[str, str] | None, attempt: int
    ) -> dict[str, Any]:
        started = time.perf_counter()
        print(f"  {name}{f' (attempt {attempt + 1})' if attempt else ''} ...", end="", flush=True, file=sys.stderr)
        log = self.log_dir / f"{name}.log"
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = Path(tmp.name)
        try:
            with log.open("w") as handle:
                code = subprocess.call(
                    [sys.executable, "-m", module, *args, "--out", str(out)],
                    cwd=REPO_ROOT,
                    env={**self.env, **(env or {})},
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                )
            elapsed = time.perf_counter() - started
            self.timings[name] = round(self.timings.get(name, 0.0) + elapsed, 1)
            if code != 0 or not out.stat().st_size:
                lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
                print(f" failed ({elapsed:.0f} s)", file=sys.stderr)
                return {"missing": f"the {name} job failed (exit {code}): {lines[-1] if lines else 'no output'}"}
            print(f" {elapsed:.0f} s", file=sys.stderr)
            return json.loads(out.read_text())
        finally:
            out.unlink(missing_ok=True)


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from edgeskin.bench import device_id, machine_info

    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    if args.keras_backend:
        env["KERAS_BACKEND"] = args.keras_backend
    runner = Runner(BENCH_ARTIFACTS / "logs", env)
    threads = str(args.threads)
    runs = str(args.runs)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "device_id": device_id(),
        "machine": machine_info(),
        "settings": {
            "threads": args.threads,
            "runs": args.runs,
            "full": args.full,
            "cam_images": args.cam_images,
            "keras_backend": args.keras_backend or env.get("KERAS_BACKEND", "tensorflow"),
            "command": " ".join([args.prog, *args.argv]),
        },
    }
    results["load_average_at_start"] = _load_average()
    cpu_start = cpu_seconds()
    results["other_busy_processes_at_start"] = busy_processes()
    try:
        classifier, detector = models()
    except Missing as exc:
        results["missing_models"] = str(exc)
        return results
    results["models"] = {"classifier": str(classifier), "detector": str(detector)}

    print("edgeskin benchmark report: running the jobs", file=sys.stderr)
    results["export_float"] = runner("export-float", "benchmarks.export_float")
    floats = float_tflite_paths(classifier, detector)

    latency: dict[str, Any] = {}
    for count in (1, 2, 4):
        latency[f"pipeline-{count}t"] = runner(
            f"pipeline-{count}t", "benchmarks.latency", "pipeline", "--threads", str(count), "--runs", runs, timed=True
        )
    for size in _profile_sizes():
        latency[f"pipeline-{size}"] = runner(
            f"pipeline-{size}",
            "benchmarks.latency",
            "pipeline",
            "--threads",
            threads,
            "--runs",
            runs,
            "--size",
            size,
            timed=True,
        )
    for task, int8 in (("classifier", classifier), ("detector", detector)):
        latency[f"{task}-int8"] = runner(
            f"{task}-int8",
            "benchmarks.latency",
            f"{task}-tflite",
            "--threads",
            threads,
            "--runs",
            runs,
            "--model",
            str(int8),
            timed=True,
        )
        for variant in ("float16", "float32"):
            path = floats.get(f"{task}-{variant}")
            if path is None:
                latency[f"{task}-{variant}"] = {"missing": f"no {variant} TFLite {task} (see export_float)"}
                continue
            latency[f"{task}-{variant}"] = runner(
                f"{task}-{variant}",
                "benchmarks.latency",
                f"{task}-tflite",
                "--threads",
                threads,
                "--runs",
                runs,
                "--model",
                str(path),
                timed=True,
            )
    latency["classifier-keras"] = runner(
        "classifier-keras", "benchmarks.latency", "classifier-keras", "--threads", threads, "--runs", runs, timed=True
    )
    latency["detector-torch"] = runner(
        "detector-torch", "benchmarks.latency", "detector-torch", "--threads", threads, "--runs", runs, timed=True
    )
    results["latency"] = latency
    results["peers"] = runner("peers", "benchmarks.peers", "--threads", threads, "--runs", runs, timed=True)
    backend_args = ["--keras-backend", args.keras_backend] if args.keras_backend else []
    results["accuracy"] = runner("accuracy", "benchmarks.accuracy", *backend_args)
    results["cam"] = runner(
        "cam-fidelity", "benchmarks.cam_fidelity", "--images", str(args.cam_images), "--threads", threads, *backend_args
    )
    results["load_average_at_end"] = _load_average()
    results["other_processes_cpu"] = other_cpu_share(cpu_start, cpu_seconds())
    results["other_busy_processes_at_end"] = busy_processes()
    results["job_seconds"] = runner.timings
    return results


def busy_processes(window_s: float = 1.0, threshold: float = 0.2) -> list[str] | None:
    """Other processes using more than ``threshold`` of a core over ``window_s`` (Linux /proc), else None."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def snapshot() -> dict[int, tuple[float, str]]:
        seen = {}
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            seen[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / tick, command or stat.split()[1])
        return seen

    before = snapshot()
    time.sleep(window_s)
    after = snapshot()
    busy = []
    for pid, (cpu, command) in after.items():
        if pid in before and (cpu - before[pid][0]) / window_s > threshold:
            busy.append(f"{pid} {int(100 * (cpu - before[pid][0]) / window_s)}% {command[:80]}")
    return busy


def cpu_seconds() -> dict[str, float] | None:
    """Busy CPU-seconds of the whole machine (/proc/stat) and of this process with its finished children."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None
    fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    busy = sum(fields[:3]) + sum(fields[5:8])
    import resource

    mine = sum(
        getattr(resource.getrusage(who), field)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for field in ("ru_utime", "ru_stime")
    )
    return {"machine": busy / os.sysconf("SC_CLK_TCK"), "this_run": mine, "wall": time.monotonic()}


def other_cpu_share(start: dict[str, float] | None, end: dict[str, float] | None) -> dict[str, float] | None:
    """CPU time other processes used between two :func:`cpu_seconds` samples (seconds, and cores on average)."""
    if not start or not end:
        return None
    others = max(0.0, (end["machine"] - start["machine"]) - (end["this_run"] - start["this_run"]))
    wall = max(1e-9, end["wall"] - start["wall"])
    return {"cpu_seconds": round(others, 2), "wall_seconds": round(wall, 1), "average_cores": round(others / wall, 3)}


def _load_average() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _profile_sizes() -> list[str]:
    from edgeskin.devices import available_profiles, load_profile

    sizes = []
    for name in available_profiles():
        width, height = load_profile(name).lores_size
        if f"{width}x{height}" not in sizes and (width, height) != (768, 576):
            sizes.append(f"{width}x{height}")
    return sizes


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


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
    rows = [
        (
            "End to end p50, 768x576, 2 threads, decode excluded",
            f"<= {TARGETS['end_to_end_p50_ms']:g} ms",
            _f(e2e, 2, " ms"),
            None if e2e is None else e2e <= TARGETS["end_to_end_p50_ms"],
        ),
        (
            "overhead_ratio (end-to-end p50 / summed bare invoke p50)",
            f"<= {TARGETS['overhead_ratio']}",
            _f(ratio, 3),
            None if ratio is None else ratio <= TARGETS["overhead_ratio"],
        ),
        (
            "Speed-up over ultralytics predict on the same INT8 .tflite (same threads)",
            f">= {TARGETS['speedup_vs_ultralytics']:g}x",
            _f(speedup, 2, "x"),
            None if speedup is None else speedup >= TARGETS["speedup_vs_ultralytics"],
        ),
        (
            "INT8 CAM vs exact Grad-CAM, median Pearson (6x6 grid, same class)",
            f">= {TARGETS['cam_pearson_median']}",
            _f(pearson, 3),
            None if pearson is None else pearson >= TARGETS["cam_pearson_median"],
        ),
        (
            "CAM cost / classify stage (pipeline p50)",
            f"<= {100 * TARGETS['cam_share_of_classify']:g}%",
            _f(None if share is None else 100 * share, 2, "%"),
            None if share is None else share <= TARGETS["cam_share_of_classify"],
        ),
    ]
    return [{"what": w, "target": t, "measured": m, "met": ok} for w, t, m, ok in rows]


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


def plot_accuracy(results: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cls = results.get("accuracy", {}).get("classifier", {}).get("rows", {})
    det = results.get("accuracy", {}).get("detector", {}).get("rows", {})
    metrics = [
        ("balanced_accuracy", "balanced acc", cls),
        ("auc", "AUC", cls),
        ("malignant_sensitivity", "malignant sens.", cls),
        ("mean_iou", "detector mean IoU", det),
    ]
    float_key = {
        "balanced_accuracy": "float_keras",
        "auc": "float_keras",
        "malignant_sensitivity": "float_keras",
        "mean_iou": "float_pytorch",
    }
    labels, floats, int8s = [], [], []
    for key, label, rows in metrics:
        f = rows.get(float_key[key], {}).get(key)
        q = rows.get("int8_tflite", {}).get(key)
        if f is None and q is None:
            continue
        labels.append(label)
        floats.append(f or 0.0)
        int8s.append(q or 0.0)
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(labels))
    width = 0.38
    bars_f = ax.bar([i - width / 2 for i in x], floats, width, label="float baseline (CPU)", color="#8c8c8c")
    bars_q = ax.bar([i + width / 2 for i in x], int8s, width, label="edge INT8 TFLite", color="#1f77b4")
    for bars in (bars_f, bars_q):
        ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    for i, (f, q) in enumerate(zip(floats, int8s, strict=True)):
        if f:
            ax.text(i, max(f, q) + 0.08, f"INT8/float {q / f:.2f}", ha="center", fontsize=8)
    ax.set_xticks(list(x), labels)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("score")
    ax.set_title("Accuracy: edge INT8 vs float baseline (validation images)")
    ax.legend(loc="upper center", fontsize=8, ncol=2)
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


def plot_latency(results: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = [(task, name, r) for task, name, r, _ in _latency_rows(results) if "latency_ms" in r]
    pipeline = results.get("latency", {}).get(f"pipeline-{results['settings']['threads']}t", {})
    if not rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    names = [f"{task}: {name}" for task, name, _ in rows]
    colours = ["#1f77b4" if "INT8" in name else "#8c8c8c" for _, name, _ in rows]
    p50 = [r["latency_ms"]["p50"] for _, _, r in rows]
    p90 = [r["latency_ms"]["p90"] for _, _, r in rows]
    y = range(len(rows))
    ax = axes[0]
    ax.barh(list(y), p50, color=colours, label="p50")
    ax.scatter(p90, list(y), color="black", marker="|", s=120, label="p90", zorder=3)
    int8 = {task: r["latency_ms"]["p50"] for task, name, r in rows if "INT8" in name}
    for i, ((task, _, _), value, high) in enumerate(zip(rows, p50, p90, strict=True)):
        ratio = f" ({value / int8[task]:.1f}x INT8)" if task in int8 and "INT8" not in names[i] else ""
        ax.text(max(value, high), i, f"  {value:.1f}{ratio}", va="center", fontsize=7)
    ax.set_yticks(list(y), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per image (p50 bar, p90 tick)")
    ax.set_title(f"Latency, {results['settings']['threads']} threads")
    ax.legend(fontsize=7)
    ax = axes[1]
    fps = [r["fps"] for _, _, r in rows]
    ax.barh(list(y), fps, color=colours)
    for i, value in enumerate(fps):
        ax.text(value, i, f" {value:.0f}", va="center", fontsize=7)
    ax.set_yticks(list(y), [""] * len(rows))
    ax.invert_yaxis()
    ax.set_xlabel("images per second (1000 / p50)")
    ax.set_title("Throughput (one stream)")
    ax = axes[2]
    sizes = [r.get("model_size_mb") or 0.0 for _, _, r in rows]
    rss = [r.get("peak_rss_mb") or 0.0 for _, _, r in rows]
    ax.barh([i - 0.2 for i in y], sizes, height=0.4, color=colours, label="model size, MB")
    ax.barh([i + 0.2 for i in y], rss, height=0.4, color=colours, alpha=0.45, label="peak RSS of the process, MiB")
    for i, (s, m) in enumerate(zip(sizes, rss, strict=True)):
        ax.text(s, i - 0.2, f" {s:.1f}", va="center", fontsize=6)
        ax.text(m, i + 0.2, f" {m:.0f}", va="center", fontsize=6)
    ax.set_xscale("log")
    ax.set_yticks(list(y), [""] * len(rows))
    ax.invert_yaxis()
    ax.set_title("Model size and peak RSS (log)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    if "end_to_end_ms" in pipeline:
        fig.suptitle(
            f"Edge INT8 vs float baselines. Whole INT8 pipeline (768x576): p50 {pipeline['end_to_end_ms']['p50']:.1f} ms, "
            f"{pipeline['fps']:.0f} FPS, peak RSS {pipeline['peak_rss_mb']:.0f} MiB",
            fontsize=10,
        )
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_stages(results: dict[str, Any], out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    latency = results.get("latency", {})
    columns = [(f"{n} thread{'s' if n > 1 else ''}", latency.get(f"pipeline-{n}t", {})) for n in (1, 2, 4)]
    columns = [(label, r) for label, r in columns if "stages_ms" in r]
    if not columns:
        return None
    stages = ["preprocess", "detect", "crop", "classify", "cam"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (_label, r) in enumerate(columns):
        bottom = 0.0
        invoke = (
            r["invoke_ms"]["detector"]["p50"]
            + r["invoke_counts_per_frame"]["classifier"] * r["invoke_ms"]["classifier"]["p50"]
        )
        for j, stage in enumerate(stages):
            value = r["stages_ms"].get(stage, {}).get("p50", 0.0)
            ax.bar(i, value, bottom=bottom, color=plt.cm.tab10(j), label=stage if i == 0 else None)
            bottom += value
        ax.scatter(
            [i],
            [r["end_to_end_ms"]["p50"]],
            color="black",
            marker="_",
            s=400,
            zorder=3,
            label="end-to-end p50" if i == 0 else None,
        )
        ax.scatter(
            [i], [invoke], color="red", marker="_", s=400, zorder=3, label="summed bare invoke p50" if i == 0 else None
        )
        ax.text(i, r["end_to_end_ms"]["p50"], f"  ratio {r['overhead_ratio']:.2f}", va="bottom", fontsize=8)
    ax.set_xticks(range(len(columns)), [label for label, _ in columns])
    top = max(r["end_to_end_ms"]["p50"] for _, r in columns)
    ax.set_ylim(0, top * 1.45)
    ax.set_ylabel("ms (p50 per stage)")
    ax.set_title("INT8 pipeline on a 768x576 PH2 frame: where the time goes")
    ax.legend(fontsize=7, loc="upper center", ncol=4)
    fig.tight_layout()
    path = out / "pipeline_stages.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_markdown(results: dict[str, Any], plots: dict[str, Path | None]) -> str:
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
    accuracy = results.get("accuracy", {})
    cls_rows = accuracy.get("classifier", {}).get("rows", {})
    det_rows = accuracy.get("detector", {}).get("rows", {})
    float_device = (
        cls_rows.get("float_keras", {}).get("device") or det_rows.get("float_pytorch", {}).get("device") or "n/a"
    )
    lines += [
        f"- **Measured**: {results['date']} (UTC), one run of `{settings['command'].strip()}`"
        f"{' (' + str(round(sum(results.get('job_seconds', {}).values()))) + ' s)' if results.get('job_seconds') else ''}.",
        f"- **Machine**: {machine.get('cpu_model')} ({machine.get('machine')}), {machine.get('cores')} cores, "
        f"CPU governor {machine.get('governor')}, {machine.get('system')}, Python {machine.get('python')}; "
        f"device id `{results.get('device_id')}`.",
        f"- **Edge runtime**: {machine.get('interpreter', {}).get('package')} {machine.get('interpreter', {}).get('version')}, "
        f"CPU (XNNPACK), {threads} threads unless stated; no Edge TPU.",
        f"- **Float baselines ran on**: {float_device}; Keras backend `{settings['keras_backend']}`"
        " (a GPU machine without TensorFlow can run the same `.keras` with `--keras-backend torch` or `jax`; "
        "this run did not use them).",
        f"- **CPU state**: load average (1, 5, 15 min) {load_start} at the start, {load_end} at the end (this run's "
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
    if "missing_models" in results:
        return "\n".join(lines + [f"**Nothing measured**: {results['missing_models']}", ""])
    timed_jobs = {**results.get("latency", {}), "peers": results.get("peers", {})}
    reruns = {
        k: len(v["contention_attempts"]) - 1
        for k, v in timed_jobs.items()
        if len(v.get("contention_attempts") or []) > 1
    }
    still = {
        k: v["other_processes_cpu"]["average_cores"]
        for k, v in timed_jobs.items()
        if (v.get("other_processes_cpu") or {}).get("average_cores", 0.0) > Runner.CONTENDED_CORES
    }
    checked = any("contention_attempts" in v for v in timed_jobs.values())
    lines.insert(
        -1,
        "- **Contention check**: not recorded in this run."
        if not checked
        else f"- **Contention check**: a timing job during which other processes used more than {Runner.CONTENDED_CORES} "
        "of a core on average is run again (at most twice; all attempts in report.json). "
        + (f"Re-run: {', '.join(f'{k} ({n}x)' for k, n in reruns.items())}. " if reruns else "No job needed a re-run. ")
        + (
            f"**Still contended after the re-runs** (cores used by others): {', '.join(f'{k} {c}' for k, c in still.items())}."
            if still
            else "Every timing job used here ran without contention above that level."
        ),
    )

    lines += ["## Acceptance targets (issue 4)", "", "| what | target | measured | met |", "|---|---|---|---|"]
    for row in acceptance(results):
        lines.append(f"| {row['what']} | {row['target']} | {row['measured']} | {_ok(row['met'])} |")
    lines.append("")

    # -- accuracy
    lines += ["## Accuracy: edge INT8 against the float baseline", ""]
    cls = accuracy.get("classifier", {})
    if "rows" in cls:
        thr = cls.get("triage_threshold")
        ref = cls_rows.get("float_keras", {})
        lines += [
            f"### Classifier — HAM10000 validation split, {cls.get('images')} images ({cls.get('split')})",
            "",
            f"Malignant sensitivity/specificity at the spec's triage threshold {_f(thr, 4)} ({cls.get('threshold_note')}).",
            "",
            "| model | device | size MB | balanced acc | AUC (ovr) | malignant sens. | malignant spec. | bal. acc INT8/float | AUC INT8/float |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        names = {
            "float_keras": "MobileNetV2 float Keras (baseline)",
            "int8_tflite": "MobileNetV2 INT8 TFLite (edge, as deployed)",
            "int8_tflite_uncalibrated": "MobileNetV2 INT8 TFLite, T = 1",
            "float_resnet50": "ResNet50 float",
            "float_efficientnetb0": "EfficientNetB0 float",
        }
        for key in ("float_keras", "int8_tflite", "int8_tflite_uncalibrated", "float_resnet50", "float_efficientnetb0"):
            row = cls_rows.get(key, {})
            if "missing" in row:
                reason = row["missing"].split(";")[0] + (
                    " (why: see *What is missing*)" if ";" in row["missing"] else ""
                )
                lines.append(f"| {names[key]} | — | — | {reason} | | | | | |")
                continue
            is_int8 = key.startswith("int8")
            lines.append(
                f"| {names[key]} | {row.get('device')} | {_f(row.get('size_mb'), 2)} | {_f(row.get('balanced_accuracy'))} | "
                f"{_f(row.get('auc'))} | {_f(row.get('malignant_sensitivity'))} | {_f(row.get('malignant_specificity'))} | "
                f"{_ratio(row.get('balanced_accuracy'), ref.get('balanced_accuracy')) if is_int8 else ''} | "
                f"{_ratio(row.get('auc'), ref.get('auc')) if is_int8 else ''} |"
            )
        agreement = cls.get("int8_vs_float", {})
        if agreement:
            lines += [
                "",
                f"INT8 vs float top-1 agreement {_f(agreement.get('top1_agreement'))}, mean |p_float - p_int8(T=1)| "
                f"{_f(agreement.get('mean_abs_probability_difference'), 4)}.",
            ]
        lines.append("")
        lines += _gpu_float_section(cls.get("gpu_float", {}), cls_rows.get("int8_tflite", {}))
    elif "missing" in cls:
        lines += [f"Classifier accuracy not measured: {cls['missing']}", ""]
    det = accuracy.get("detector", {})
    if "rows" in det:
        ref = det_rows.get("float_pytorch", {})
        lines += [
            f"### Detector — held-out PH2 images, {det.get('images')} ({det.get('split')})",
            "",
            f"{det.get('definitions')}.",
            "",
            "| model | device | size MB | mean IoU | median IoU | IoU >= 0.5 | mAP50 | no box | mean IoU INT8/float |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        names = {
            "float_pytorch": "YOLOv5n float, ultralytics PyTorch (baseline)",
            "int8_tflite": "YOLOv5n INT8 TFLite, edgeskin Detector (edge)",
            "classical": "classical localiser (no model)",
        }
        for key in ("float_pytorch", "int8_tflite", "classical"):
            row = det_rows.get(key, {})
            if "missing" in row:
                lines.append(f"| {names[key]} | — | — | {row['missing']} | | | | | |")
                continue
            lines.append(
                f"| {names[key]} | {row.get('device')} | {_f(row.get('size_mb'), 2)} | {_f(row.get('mean_iou'))} | "
                f"{_f(row.get('median_iou'))} | {_f(row.get('iou50_rate'))} | {_f(row.get('map50'))} | {row.get('no_box')} | "
                f"{_ratio(row.get('mean_iou'), ref.get('mean_iou')) if key == 'int8_tflite' else ''} |"
            )
        agreement = det.get("int8_vs_float", {})
        if agreement:
            lines += [
                "",
                f"Float vs INT8 top boxes: mean IoU {_f(agreement.get('mean_top_box_iou_float_vs_int8'))}, "
                f"share with IoU >= 0.9 {_f(agreement.get('share_top_boxes_iou_ge_0.9'))}.",
            ]
        lines.append("")
    elif "missing" in det:
        lines += [f"Detector accuracy not measured: {det['missing']}", ""]
    if plots.get("accuracy"):
        lines += ["![accuracy](accuracy.png)", ""]

    # -- latency
    lines += [
        f"## Latency: edge INT8 against the float baselines ({threads} threads)",
        "",
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
    lines.append("")
    if plots.get("latency"):
        lines += ["![latency](latency.png)", ""]

    # -- pipeline
    latency = results.get("latency", {})
    lines += [
        "## The INT8 pipeline end to end",
        "",
        "`LesionPipeline.predict` on a PH2 frame resized to the given size and held in memory (file decode excluded; "
        "decode is timed apart). Bare invoke = `interpreter.invoke()` of separate interpreters fed this frame's own "
        "tensors, interleaved with the predict calls. overhead ratio = end-to-end p50 / (detector invoke p50 + "
        "lesions x test-time views x classifier invoke p50; the classifier column is one view).",
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
            "wrappers' own sub-stages, `classify.*` per lesion):",
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
    if plots.get("stages"):
        lines += ["![pipeline stages](pipeline_stages.png)", ""]

    # -- peers
    peers = results.get("peers", {})
    lines += ["## Peers, same run", ""]
    if "ours" in peers:
        lines += [
            f"Ultralytics {peers.get('ultralytics_version')} `YOLO('{peers['model']}').predict` against edgeskin's `Detector.detect` on "
            f"the same INT8 file and the same {peers['images']} decoded PH2 frames, interleaved call by call, "
            f"{peers['runs']} runs each. Ultralytics' LiteRT backend quantizes the [0, 1]-scaled image with the input "
            "tensor's scale; edgeskin's detector folds /255 into the graph (input scale 1), so unchanged ultralytics "
            "feeds the wrong integers (its boxes disagree, see the agreement column); *adapted* divides the scale it "
            "reads by 255 and then agrees with ours. Ultralytics' thread default is cores - 1.",
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
            lines += [
                "",
                f"Our whole pipeline against its bare `invoke()` times ({threads} threads): end-to-end p50 "
                f"{_f(main_row['end_to_end_ms']['p50'], 2)} ms vs summed invoke p50 "
                f"{_f(main_row['end_to_end_ms']['p50'] - main_row['overhead_ms'], 2)} ms: ratio "
                f"{_f(main_row['overhead_ratio'], 3)}, {_f(main_row['overhead_ms'], 2)} ms outside the models.",
            ]
        lines.append("")
    else:
        lines += [f"Not measured: {peers.get('missing', 'unknown')}", ""]

    # -- CAM
    cam = results.get("cam", {})
    lines += ["## CAM fidelity: INT8 CAM against exact Grad-CAM", ""]
    if "metrics" in cam and "cost" in cam:
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
        lines.append("")
    else:
        lines += [f"Not measured: {cam.get('missing', 'unknown')}", ""]

    # -- devices, missing, reproduce
    reference_dir = REPO_ROOT / "benchmarks" / "reference"
    present = sorted(p.stem for p in reference_dir.glob("*.json"))
    lines += [
        "## Per-device reference results",
        "",
        f"`benchmarks/reference/<device>.json` (the JSON of `edgeskin bench`): present here: {', '.join(present) or 'none'}. "
        f"Not measured (no such device here): {', '.join(d for d in DEVICES_TO_FILL if d not in present)}. On the device:",
        "",
        "```sh",
        "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
        "edgeskin bench --threads 4 --json benchmarks/reference/$(edgeskin bench --device-id).json",
        "```",
        "",
        "## What is missing, and why",
        "",
    ]
    missing = missing_items(results)
    absent = [d for d in DEVICES_TO_FILL if d not in present]
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
        "edgeskin bench report --out docs/benchmarks          # this page (python -m benchmarks.report)",
        "edgeskin bench --json out.json                       # the quick suite alone",
        "pytest benchmarks [--full]                           # pytest-benchmark suites, JSON in artifacts/bench/",
        "```",
        "",
        "Raw numbers of this run: [report.json](report.json).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks.report") -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks"), help="report folder")
    parser.add_argument("--threads", type=int, default=2, help="threads of the main comparisons (default 2)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per latency job (default 100; --full 300)")
    parser.add_argument("--full", action="store_true", help="more runs and every validation image for CAM fidelity")
    parser.add_argument("--cam-images", type=int, default=None, help="CAM fidelity images (default 300; --full 855)")
    parser.add_argument("--keras-backend", choices=("tensorflow", "torch", "jax"), default=None)
    parser.add_argument("--from-json", help="render from a previous run's report.json instead of measuring")
    args = parser.parse_args(argv)
    args.prog, args.argv = prog, list(sys.argv[1:] if argv is None else argv)
    args.runs = args.runs or (300 if args.full else 100)
    args.cam_images = args.cam_images or (100000 if args.full else 300)
    out = Path(args.out)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        try:
            models()
        except Missing as exc:
            print(f"benchmarks.report: error: nothing to measure: {exc}", file=sys.stderr)
            return 2
        results = run_all(args)
    out.mkdir(parents=True, exist_ok=True)
    if not args.from_json:
        (out / "report.json").write_text(json.dumps(results, indent=1) + "\n")
    plots = {
        "accuracy": plot_accuracy(results, out),
        "latency": plot_latency(results, out),
        "stages": plot_stages(results, out),
    }
    (out / "report.md").write_text(render_markdown(results, plots))
    print(
        f"wrote {out / 'report.md'}, report.json and {sum(p is not None for p in plots.values())} plots",
        file=sys.stderr,
    )
    for row in acceptance(results) if "settings" in results and "missing_models" not in results else []:
        print(f"  {row['what']}: {row['measured']} (target {row['target']}, met: {_ok(row['met'])})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
