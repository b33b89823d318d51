"""The benchmark report: accuracy and latency of the edge INT8 models against their float baselines.

``edgeskin bench report [--out DIR] [--full]`` (= ``python -m edgeskin.report``) runs, in this order and each
in its own process (so that each peak RSS is its own and TensorFlow / PyTorch never share a process with the
measured edge runtime):

1. latency (:mod:`edgeskin.report.latency`): the edge pipeline at 1, 2 and 4 threads and at the device
   profiles' frame sizes; each model alone as INT8, float16 and float32 TFLite; the float Keras classifier;
   the float ultralytics detector;
2. peers (:mod:`edgeskin.report.peers`): ultralytics' ``YOLO(<same .tflite>).predict`` against our Detector;
3. accuracy on the validation images, INT8 against float (:mod:`edgeskin.report.accuracy`);
4. CAM fidelity against exact Grad-CAM (:mod:`edgeskin.report.cam_fidelity`);

then writes ``report.md``, ``report.json`` (every number, raw) and PNG plots into ``--out``. Every number in
the page comes from this run; whatever could not be measured is listed with the reason. What each row needs:

* the runtime alone (any install): the INT8 pipeline rows;
* an edgeskin source checkout with ``../shared/data``: the per-model rows on real images and the accuracy;
* ``[train]`` (TensorFlow/Keras, torch, ultralytics) and the float models under ``artifacts/``: the float rows,
  the peers and the CAM fidelity; the float TFLite rows need ``python -m benchmarks.export_float`` first
  (``python -m benchmarks.report`` in the checkout runs it, then this report);
* ``[eval]`` (matplotlib): the plots.

A row that cannot be measured says which of these it lacked.
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
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from edgeskin.report.common import BENCH_ARTIFACTS, CHECKOUT, CONTENDED_CORES, Missing, float_tflite_paths, models
from edgeskin.report.render import _ok, acceptance, render_markdown

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

    CONTENDED_CORES = CONTENDED_CORES

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
                    cwd=CHECKOUT or self.log_dir,
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


def run_all(args: argparse.Namespace, export_float: dict[str, Any] | None = None) -> dict[str, Any]:
    from edgeskin.bench import device_id, machine_info

    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.keras_backend:
        env["KERAS_BACKEND"] = args.keras_backend
    # Job logs: beside the artifacts in a checkout; otherwise a temporary folder (nothing written where it runs).
    log_dir = BENCH_ARTIFACTS / "logs" if CHECKOUT else Path(tempfile.mkdtemp(prefix="edgeskin-report-logs-"))
    runner = Runner(log_dir, env, retries=args.retries)
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
    results["export_float"] = export_float or {
        "missing": "float TFLite companions are made in the source checkout by python -m benchmarks.export_float "
        "(python -m benchmarks.report runs it first); existing ones under artifacts/bench are used"
    }
    floats = float_tflite_paths(classifier, detector)

    latency: dict[str, Any] = {}
    for count in (1, 2, 4):
        latency[f"pipeline-{count}t"] = runner(
            f"pipeline-{count}t",
            "edgeskin.report.latency",
            "pipeline",
            "--threads",
            str(count),
            "--runs",
            runs,
            timed=True,
        )
    for size in _profile_sizes():
        latency[f"pipeline-{size}"] = runner(
            f"pipeline-{size}",
            "edgeskin.report.latency",
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
        for variant, path in (("int8", int8), ("float16", floats.get(f"{task}-float16")),
                              ("float32", floats.get(f"{task}-float32"))):  # fmt: skip
            name = f"{task}-{variant}"
            if path is None:
                latency[name] = {"missing": f"no {variant} TFLite {task} (see export_float)"}
                continue
            latency[name] = runner(
                name, "edgeskin.report.latency", f"{task}-tflite", "--threads", threads, "--runs", runs,
                "--model", str(path), timed=True,
            )  # fmt: skip
    latency["classifier-keras"] = runner(
        "classifier-keras",
        "edgeskin.report.latency",
        "classifier-keras",
        "--threads",
        threads,
        "--runs",
        runs,
        timed=True,
    )
    latency["detector-torch"] = runner(
        "detector-torch", "edgeskin.report.latency", "detector-torch", "--threads", threads, "--runs", runs, timed=True
    )
    results["latency"] = latency
    results["peers"] = runner("peers", "edgeskin.report.peers", "--threads", threads, "--runs", runs, timed=True)
    backend_args = ["--keras-backend", args.keras_backend] if args.keras_backend else []
    results["accuracy"] = runner("accuracy", "edgeskin.report.accuracy", *backend_args)
    results["cam"] = runner(
        "cam-fidelity",
        "edgeskin.report.cam_fidelity",
        "--images",
        str(args.cam_images),
        "--threads",
        threads,
        *backend_args,
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


def write_plots(results: dict[str, Any], out: Path) -> dict[str, Path | None]:
    """The report's PNG plots, or none (and a line saying so) without matplotlib (the ``[eval]`` extra)."""
    if find_spec("matplotlib") is None:
        print("  plots skipped: they need matplotlib: pip install 'edgeskin[eval]'", file=sys.stderr)
        return {}
    from edgeskin.report.plots import plot_accuracy, plot_latency, plot_stages

    return {
        "accuracy": plot_accuracy(results, out),
        "latency": plot_latency(results, out),
        "stages": plot_stages(results, out),
    }


def main(
    argv: list[str] | None = None, prog: str = "python -m edgeskin.report", export_float: dict[str, Any] | None = None
) -> int:
    """Measure (or ``--from-json``: re-render) and write the report; ``export_float``: the checkout's float export."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/benchmarks", help="report folder (default docs/benchmarks)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the main comparisons (default 2)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per latency job (default 100; --full 300)")
    parser.add_argument("--full", action="store_true", help="more runs and every validation image for CAM fidelity")
    parser.add_argument("--cam-images", type=int, default=None, help="CAM fidelity images (default 300; --full 855)")
    parser.add_argument("--keras-backend", choices=("tensorflow", "torch", "jax"), default=None)
    parser.add_argument("--from-json", help="render from a previous run's report.json instead of measuring")
    parser.add_argument(
        "--retries", type=int, default=2, help="re-runs of a timing job that other processes disturbed (default 2)"
    )
    args = parser.parse_args(argv)
    if args.retries < 0:
        parser.error(f"--retries: expected 0 or more, got {args.retries}")
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
            print(f"{prog}: error: nothing to measure: {exc}", file=sys.stderr)
            return 2
        results = run_all(args, export_float)
    out.mkdir(parents=True, exist_ok=True)
    if not args.from_json:
        (out / "report.json").write_text(json.dumps(results, indent=1) + "\n")
    plots = write_plots(results, out)
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
