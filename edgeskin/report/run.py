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
* the data folder and the validation splits (``--data``, ``--classifier-split``, ``--detector-split``): the
  per-model rows on real images and the accuracy;
* ``[train]`` (TensorFlow/Keras, torch, ultralytics) and the float models (``--float-classifier``,
  ``--float-detector``): the float rows, the peers and the CAM fidelity; the float TFLite rows need their files
  (``--float-dir``, made by ``python -m benchmarks.export_float`` in a source checkout);
* ``[eval]`` (matplotlib): the plots.

Every input is an option (:func:`edgeskin.report.common.add_input_arguments`); the package knows no checkout.
``python -m benchmarks.report`` in a source checkout passes the checkout's paths and makes the float TFLite files
first.

A row that cannot be measured says which of these it lacked.

Each step above is a group of jobs: ``pipeline`` (the pipeline rows of 1), ``models`` (the per-model rows of 1),
``peers``, ``accuracy`` and ``cam``. ``report.json`` says under ``provenance``, for each group, when, on which
device (id and CPU) and by which command it was measured, with the CPU load of that run.

``--from-json BASE`` renders ``report.md`` and the plots from a previous ``report.json`` without measuring.
``--from-json BASE --refresh GROUPS`` (comma-separated groups) runs only those groups' jobs again, with the same
arguments as a whole run, keeps BASE's other sections unchanged and writes ``report.json`` too: its header
(date, device, machine, settings, CPU state) is the new run's, BASE's is kept under ``kept_from``, and
``provenance`` gives the kept groups BASE's entries (built from BASE's header when BASE has none). ``--threads``
must be BASE's (the default then) and the Keras backend defaults to BASE's. When the groups come from different
runs the page says which part was measured where, and warns where it sets rows of different machines side by
side::

    python -m edgeskin.report --from-json REPORT/report.json --refresh pipeline --out REPORT
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from edgeskin.report.common import (
    CONTENDED_CORES,
    Missing,
    ReportInputs,
    add_input_arguments,
    display_path,
    float_tflite_paths,
    models,
)
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

    A job that reports its bare invokes (``host_noise`` of :func:`edgeskin.bench.host_noise`: each model's invoke
    p50 over its fastest call) is judged against this host's own quiet level, the lowest such spread any job of
    this run measured here (:class:`HostCheck`): other virtual machines on a shared host slow the invokes without
    showing in this machine's CPU counters, but how steady an idle host's invokes are differs between hosts, so no
    fixed limit fits them all. A job whose spread is well above the host's level is run again in the same way; the
    verdict replaces the job's own (``host_noise``, and its warning), so the page gives one verdict per job.
    """

    CONTENDED_CORES = CONTENDED_CORES

    def __init__(self, log_dir: Path, env: dict[str, str], retries: int = 2, job_args: Sequence[str] = ()) -> None:
        self.log_dir = log_dir
        self.env = env
        self.retries = retries
        self.job_args = tuple(job_args)  # given to every job (the report's inputs)
        self.timings: dict[str, float] = {}
        self.host = HostCheck()
        self.judged: list[dict[str, Any]] = []  # the results judged by the host check, in order
        log_dir.mkdir(parents=True, exist_ok=True)

    def __call__(
        self, name: str, module: str, *args: str, env: dict[str, str] | None = None, timed: bool = False
    ) -> dict[str, Any]:
        attempts: list[dict[str, float] | None] = []
        quiet: list[bool | None] = []
        reasons: list[str] = []
        for attempt in range(1 + (self.retries if timed else 0)):
            before = cpu_seconds()
            result = self._once(name, module, args, env, attempt)
            share = other_cpu_share(before, cpu_seconds())
            attempts.append(share)
            contended = share is not None and share["average_cores"] > self.CONTENDED_CORES
            if timed and "host_noise" in result:
                result["host_noise"] = self.host.judge(result["host_noise"])
                result["warnings"] = _host_warning_replaced(result.get("warnings"), result["host_noise"])
                self.judged.append(result)
            quiet.append(result.get("host_noise", {}).get("quiet"))
            busy = quiet[-1] is False
            if not timed or "missing" in result or not (contended or busy):
                break
            reasons.append("contended" if contended else "busy")
            if attempt == self.retries:
                break
            why = (
                f"other processes used {share['average_cores']} cores meanwhile"  # type: ignore[index]
                if contended
                else f"the host was busy (bare invoke p50 / fastest {result['host_noise']['invoke_p50_over_min']}, "
                f"this host's quiet level {result['host_noise']['host_level']})"
            )
            print(f"  ({name}: {why}: again)", file=sys.stderr)
        if timed and "missing" not in result:
            result["other_processes_cpu"] = attempts[-1]
            result["contention_attempts"] = attempts
            result["rerun_reasons"] = reasons[: len(attempts) - 1]
            if any(value is not None for value in quiet):
                result["host_quiet_attempts"] = quiet
        return result

    def rejudge(self) -> None:
        """Judge every kept result again against the host's final level: a job run before a quieter one was measured
        was judged against a higher level (it is not run again; its verdict and warning say what holds now)."""
        for result in self.judged:
            result["host_noise"] = self.host.judge(result["host_noise"], learn=False)
            result["warnings"] = _host_warning_replaced(result.get("warnings"), result["host_noise"])

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
                    [sys.executable, "-m", module, *args, *self.job_args, "--out", str(out)],
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


# A job's bare invokes may spread this much above the host's own quiet level (the lowest spread measured here in
# this run) and still be quiet: the spread of one idle host's runs (1.01-1.05 over the eleven quiet runs of the
# reference host, benchmarks/reference/README.md) stays well inside it.
HOST_NOISE_TOLERANCE = 1.05


class HostCheck:
    """This host's quiet level, learnt from the jobs it runs, and each job's verdict against it.

    The level is the lowest bare-invoke spread (the larger of the models' p50 / fastest call) any job measured on
    this host so far, so the first job defines it and is quiet; a later job is busy when its spread exceeds the
    level by more than :data:`HOST_NOISE_TOLERANCE`.
    """

    def __init__(self, tolerance: float = HOST_NOISE_TOLERANCE) -> None:
        self.tolerance = tolerance
        self.level: float | None = None

    def judge(self, noise: dict[str, Any], learn: bool = True) -> dict[str, Any]:
        """``noise`` (a job's ``host_noise``) with ``limit``, ``quiet`` and ``host_level`` from this host's level
        (``learn``: lowered first to this job's spread when that is lower)."""
        spreads = noise.get("invoke_p50_over_min") or {}
        if not spreads:
            return noise
        spread = max(spreads.values())
        if learn or self.level is None:
            self.level = spread if self.level is None else min(self.level, spread)
        limit = round(self.level * self.tolerance, 4)
        return {
            **noise,
            "limit": limit,
            "quiet": spread <= limit,
            "host_level": self.level,
            "judged": f"against this host's quiet level {self.level} (the lowest spread of this run's jobs) "
            f"x {self.tolerance}",
        }


def _host_warning_replaced(warnings: list[str] | None, noise: dict[str, Any]) -> list[str]:
    """The job's warnings with its own host verdict (made against a fixed limit) replaced by ``noise``'s."""
    from edgeskin.bench import host_noise_warning

    kept = [w for w in warnings or [] if not w.startswith("the host was busy")]
    verdict = host_noise_warning(noise)
    return kept + ([verdict] if verdict else [])


@dataclass(frozen=True)
class Jobs:
    """What the jobs of one run share: the runner and the arguments every job is given."""

    runner: Runner
    threads: str
    runs: str
    cam_images: str
    backend_args: tuple[str, ...]
    classifier: Path
    detector: Path
    inputs: ReportInputs


def _pipeline_jobs(jobs: Jobs) -> dict[str, Any]:
    """``pipeline``: the edge pipeline at 1, 2 and 4 threads, and at ``--threads`` on each profile's frame size."""
    latency: dict[str, Any] = {}
    for count in (1, 2, 4):
        latency[f"pipeline-{count}t"] = jobs.runner(
            f"pipeline-{count}t",
            "edgeskin.report.latency",
            "pipeline",
            "--threads",
            str(count),
            "--runs",
            jobs.runs,
            timed=True,
        )
    for size in _profile_sizes():
        latency[f"pipeline-{size}"] = jobs.runner(
            f"pipeline-{size}",
            "edgeskin.report.latency",
            "pipeline",
            "--threads",
            jobs.threads,
            "--runs",
            jobs.runs,
            "--size",
            size,
            timed=True,
        )
    return latency


def _model_jobs(jobs: Jobs) -> dict[str, Any]:
    """``models``: each model alone as INT8, float16 and float32 TFLite, the float Keras classifier and torch detector."""
    latency: dict[str, Any] = {}
    floats = float_tflite_paths(jobs.inputs, jobs.classifier, jobs.detector)
    threads, runs = jobs.threads, jobs.runs
    for task, int8 in (("classifier", jobs.classifier), ("detector", jobs.detector)):
        for variant, path in (("int8", int8), ("float16", floats.get(f"{task}-float16")),
                              ("float32", floats.get(f"{task}-float32"))):  # fmt: skip
            name = f"{task}-{variant}"
            if path is None:
                where = "--float-dir not given" if jobs.inputs.float_dir is None else "see export_float"
                latency[name] = {"missing": f"no {variant} TFLite {task} ({where})"}
                continue
            latency[name] = jobs.runner(
                name, "edgeskin.report.latency", f"{task}-tflite", "--threads", threads, "--runs", runs,
                "--model", str(path), timed=True,
            )  # fmt: skip
    latency["classifier-keras"] = jobs.runner(
        "classifier-keras",
        "edgeskin.report.latency",
        "classifier-keras",
        "--threads",
        threads,
        "--runs",
        runs,
        timed=True,
    )
    latency["detector-torch"] = jobs.runner(
        "detector-torch", "edgeskin.report.latency", "detector-torch", "--threads", threads, "--runs", runs, timed=True
    )
    return latency


def _peers_job(jobs: Jobs) -> dict[str, Any]:
    """``peers``: ultralytics' predict against our Detector on the same INT8 file."""
    return jobs.runner("peers", "edgeskin.report.peers", "--threads", jobs.threads, "--runs", jobs.runs, timed=True)


def _accuracy_job(jobs: Jobs) -> dict[str, Any]:
    """``accuracy``: INT8 against float on the validation images."""
    return jobs.runner("accuracy", "edgeskin.report.accuracy", *jobs.backend_args)


def _cam_job(jobs: Jobs) -> dict[str, Any]:
    """``cam``: the INT8 CAM against exact Grad-CAM."""
    return jobs.runner(
        "cam-fidelity",
        "edgeskin.report.cam_fidelity",
        "--images",
        jobs.cam_images,
        "--threads",
        jobs.threads,
        *jobs.backend_args,
    )


# The report's groups in the order a run measures them. "pipeline" and "models" fill results["latency"]
# (the keys pipeline-* and the others); every other group fills results[<group>].
STEPS: dict[str, Callable[[Jobs], dict[str, Any]]] = {
    "pipeline": _pipeline_jobs,
    "models": _model_jobs,
    "peers": _peers_job,
    "accuracy": _accuracy_job,
    "cam": _cam_job,
}
GROUPS = tuple(STEPS)
LATENCY_GROUPS = ("pipeline", "models")


def group_section(results: dict[str, Any], group: str) -> dict[str, Any] | None:
    """What ``group`` measured in ``results``: its latency keys, or its own section (None when absent)."""
    if group in LATENCY_GROUPS:
        latency = results.get("latency", {})
        return {key: row for key, row in latency.items() if key.startswith("pipeline-") == (group == "pipeline")}
    return results.get(group)


def _place(results: dict[str, Any], group: str, section: dict[str, Any]) -> None:
    """Put what ``group`` measured into ``results`` (the inverse of :func:`group_section`)."""
    if group in LATENCY_GROUPS:
        results.setdefault("latency", {}).update(section)
    else:
        results[group] = section


def provenance_entry(header: dict[str, Any]) -> dict[str, Any]:
    """Where, when and by what command a run measured, from its report header: one entry of ``provenance``.

    ``cpu`` is the header's ``machine.cpu_model``; ``other_processes_cpu`` is there only when the header has it.
    """
    entry = {
        "date": header.get("date"),
        "device_id": header.get("device_id"),
        "cpu": header.get("machine", {}).get("cpu_model"),
        "command": header.get("settings", {}).get("command"),
        "load_average_at_start": header.get("load_average_at_start"),
    }
    if header.get("other_processes_cpu") is not None:
        entry["other_processes_cpu"] = header["other_processes_cpu"]
    return entry


def measure(
    args: argparse.Namespace, groups: Sequence[str], export_float: dict[str, Any] | None = None
) -> dict[str, Any]:
    """This run's header, the jobs of ``groups`` (in :data:`GROUPS` order), the CPU state at the end, provenance.

    ``export_float`` (the checkout's float export) is recorded when ``models`` is among the groups, the only
    one that uses the float TFLite files.
    """
    from edgeskin.bench import device_id, machine_info

    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.keras_backend:
        env["KERAS_BACKEND"] = args.keras_backend
    given = ReportInputs.from_args(args)
    # Job logs: in the work folder when one was given, else a temporary folder (nothing written where it runs).
    runner = Runner(given.work_dir("logs"), env, retries=args.retries, job_args=given.argv())
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "device_id": device_id(),
        "machine": machine_info(),
        "settings": {
            "threads": args.threads,
            "runs": args.runs,
            "full": args.full,
            "cam_images": args.cam_images,
            "retries": args.retries,
            "keras_backend": args.keras_backend or env.get("KERAS_BACKEND", "tensorflow"),
            "command": " ".join([args.prog, *args.argv]),
            "inputs": {key: display_path(value) for key, value in vars(given).items() if value is not None},
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

    print(f"edgeskin benchmark report: running the jobs of {', '.join(groups)}", file=sys.stderr)
    if "models" in groups:
        results["export_float"] = export_float or {
            "missing": "float TFLite companions are made in the source checkout by python -m benchmarks.export_float "
            "(python -m benchmarks.report runs it first); existing ones in --float-dir are used"
        }
    jobs = Jobs(
        runner=runner,
        threads=str(args.threads),
        runs=str(args.runs),
        cam_images=str(args.cam_images),
        backend_args=("--keras-backend", args.keras_backend) if args.keras_backend else (),
        classifier=classifier,
        detector=detector,
        inputs=given,
    )
    for group in GROUPS:
        if group in groups:
            _place(results, group, STEPS[group](jobs))
    runner.rejudge()
    results["load_average_at_end"] = _load_average()
    results["other_processes_cpu"] = other_cpu_share(cpu_start, cpu_seconds())
    results["other_busy_processes_at_end"] = busy_processes()
    results["job_seconds"] = runner.timings
    here = provenance_entry(results)
    results["provenance"] = {group: here for group in GROUPS if group in groups}
    return results


def run_all(args: argparse.Namespace, export_float: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole report: every group's jobs, all with this run's provenance."""
    return measure(args, GROUPS, export_float)


def refresh(
    base: dict[str, Any], args: argparse.Namespace, groups: Sequence[str], export_float: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``base`` (a report.json's dict) with the jobs of ``groups`` run again and every other section kept as is.

    The top-level header (date, device id, machine, settings, CPU state, job seconds, models) is this run's;
    ``base``'s top-level fields other than its sections and provenance are kept under ``kept_from``.
    ``provenance`` gives the refreshed groups this run's entry and the kept ones ``base``'s entry, or, for a
    ``base`` made before provenance was recorded, one built from ``base``'s header.

    Raises:
        Missing: the edge models are not there (nothing can be measured).
    """
    new = measure(args, groups, export_float)
    if "missing_models" in new:
        raise Missing(new["missing_models"])
    sections = ("latency", *(group for group in GROUPS if group not in LATENCY_GROUPS))
    results = {key: value for key, value in new.items() if key not in (*sections, "provenance")}
    if "models" not in groups and "export_float" in base:
        results["export_float"] = base["export_float"]
    kept = base.get("provenance") or {}
    provenance = {}
    for group in GROUPS:
        if group in groups:
            provenance[group] = new["provenance"][group]
            _place(results, group, group_section(new, group))
            continue
        provenance[group] = kept.get(group) or provenance_entry(base)
        section = group_section(base, group)
        if section is not None:
            _place(results, group, section)
    results["provenance"] = provenance
    results["kept_from"] = {key: value for key, value in base.items() if key not in (*sections, "provenance")}
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


def _refresh_groups(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The groups named by ``--refresh`` (comma-separated), in :data:`GROUPS` order; anything else is an error."""
    named = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in named if name not in GROUPS]
    if unknown or not named:
        parser.error(
            f"--refresh: expected one or more of {', '.join(GROUPS)} (comma-separated), "
            f"got {', '.join(map(repr, unknown)) if unknown else 'none'}"
        )
    return [group for group in GROUPS if group in named]


def main(
    argv: list[str] | None = None,
    prog: str = "python -m edgeskin.report",
    export_float: dict[str, Any] | None = None,
    shown_argv: list[str] | None = None,
) -> int:
    """Measure (or ``--from-json``: re-render; with ``--refresh``: re-measure part of) and write the report.

    ``export_float``: the checkout's float export. ``shown_argv``: the arguments the report records as its
    command (default ``argv``; a wrapper that adds its defaults records what was typed).
    """
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="report folder (report.md, report.json, plots)")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads of the main comparisons (default 2; --refresh: BASE's)"
    )
    parser.add_argument("--runs", type=int, default=None, help="timed runs per latency job (default 100; --full 300)")
    parser.add_argument("--full", action="store_true", help="more runs and every validation image for CAM fidelity")
    parser.add_argument("--cam-images", type=int, default=None, help="CAM fidelity images (default 300; --full 855)")
    parser.add_argument(
        "--keras-backend",
        choices=("tensorflow", "torch", "jax"),
        default=None,
        help="Keras backend of the float jobs (default $KERAS_BACKEND, else tensorflow; --refresh: BASE's)",
    )
    parser.add_argument(
        "--from-json", metavar="BASE", help="render from a previous run's report.json instead of measuring"
    )
    parser.add_argument(
        "--refresh",
        metavar="GROUPS",
        help=f"with --from-json BASE: measure only these groups again ({', '.join(GROUPS)}; comma-separated), "
        "keep BASE's other sections and write report.json",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-runs of a timing job that other processes disturbed or that found its host busy (default 2)",
    )
    add_input_arguments(parser.add_argument_group("inputs (each optional: the rows that need one say so)"))
    args = parser.parse_args(argv)
    if args.retries < 0:
        parser.error(f"--retries: expected 0 or more, got {args.retries}")
    if args.refresh is not None and not args.from_json:
        parser.error("--refresh: expected --from-json BASE too (the report whose other sections are kept), got none")
    groups = _refresh_groups(parser, args.refresh) if args.refresh is not None else []
    base = json.loads(Path(args.from_json).read_text()) if args.from_json else {}
    if groups:
        if "missing_models" in base or "settings" not in base:
            parser.error(
                f"--refresh: expected BASE {args.from_json} to be a report with measurements, got one without "
                f"({base.get('missing_models', 'no settings')})"
            )
        # The kept sections were measured at BASE's thread count, which the page's headings and main rows use.
        if args.threads is not None and args.threads != base["settings"]["threads"]:
            parser.error(
                f"--refresh: expected --threads {base['settings']['threads']} (BASE's, which its kept rows used), "
                f"got {args.threads}"
            )
        args.threads = base["settings"]["threads"]
        args.keras_backend = args.keras_backend or base["settings"].get("keras_backend")
    args.prog, args.argv = prog, list(shown_argv if shown_argv is not None else sys.argv[1:] if argv is None else argv)
    args.threads = args.threads or 2
    args.runs = args.runs or (300 if args.full else 100)
    args.cam_images = args.cam_images or (100000 if args.full else 300)
    out = Path(args.out)
    if args.from_json and not groups:
        results = base  # re-rendered only: its report.json is not rewritten
        out.mkdir(parents=True, exist_ok=True)
    else:
        try:
            models()
            results = refresh(base, args, groups, export_float) if groups else run_all(args, export_float)
        except Missing as exc:
            print(f"{prog}: error: nothing to measure: {exc}", file=sys.stderr)
            return 2
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(results, indent=1) + "\n")
    plots = write_plots(results, out)
    (out / "report.md").write_text(render_markdown(results, plots, ReportInputs.from_args(args).reference_dir))
    print(
        f"wrote {out / 'report.md'}, report.json and {sum(p is not None for p in plots.values())} plots",
        file=sys.stderr,
    )
    for row in acceptance(results) if "settings" in results and "missing_models" not in results else []:
        print(f"  {row['what']}: {row['measured']} (target {row['target']}, met: {_ok(row['met'])})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
