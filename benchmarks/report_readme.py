"""The README's end-to-end row, rewritten from a benchmark report's ``report.json`` (a checkout tool: it edits the
README beside it).

``python -m benchmarks.report_readme [--report docs/benchmarks/report.json] [--readme README.md]``

The row of the README table that starts with ``| end to end, 768×576 frame`` is replaced by one made from the
report: the machine, the threads, end-to-end p50, the overhead ratio, annotate / detect, the CAM's share of
classify and the INT8 CAM's Pearson correlation with Grad-CAM. Nothing else in the README changes; a README
without that row is an error (nothing is written).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from edgeskin.errors import ConfigError

ROW_START = "| end to end, 768×576 frame"
LINK = "[`docs/benchmarks/report.md`](docs/benchmarks/report.md)"


def _number(value: Any, digits: int, suffix: str = "") -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.{digits}f}{suffix}"


def readme_row(report: dict[str, Any]) -> str:
    """The README table row for ``report`` (the dict of a ``report.json``)."""
    threads = report["settings"]["threads"]
    pipeline = report.get("latency", {}).get(f"pipeline-{threads}t", {})
    if "end_to_end_ms" not in pipeline:
        raise ConfigError(f"the report has no pipeline-{threads}t measurement: {pipeline.get('missing', 'absent')}")
    stages = pipeline.get("stages_ms", {})
    annotate, detect = stages.get("annotate", {}).get("p50"), stages.get("detect", {}).get("p50")
    overlay = annotate / detect if isinstance(annotate, (int, float)) and detect else None
    share = pipeline.get("cam_share_of_classify")
    pearson = report.get("cam", {}).get("metrics", {}).get("same_class", {}).get("pearson_grid", {}).get("median")
    machine = report.get("machine", {})
    cpu = re.sub(r"\s+", " ", str(machine.get("cpu_model", "unknown CPU"))).strip()
    if "cpu_features" in machine:  # the INT8 extensions: two machines both called "AMD EPYC" ran INT8 4x apart
        cpu += f", {'/'.join(machine['cpu_features']).upper() or 'no INT8 extension listed'}"
    arch = "x86" if str(report.get("device_id", "")).startswith("x86") else machine.get("machine", "")
    figures = (
        f"p50 {_number(pipeline['end_to_end_ms']['p50'], 1, ' ms')}; "
        f"overhead ratio {_number(pipeline.get('overhead_ratio'), 2)}; "
        f"annotate {_number(overlay, 2)}x detect; "
        f"CAM {_number(None if share is None else 100 * share, 1, '%')} of classify; "
        f"INT8 CAM vs Grad-CAM Pearson {_number(pearson, 3)}"
    )
    return f"{ROW_START}, {arch} ({cpu}), {threads} threads | {figures} | {LINK} |"


def update_readme(text: str, report: dict[str, Any]) -> str:
    """``text`` with its end-to-end row replaced.

    Raises:
        ConfigError: the README has no such row, or more than one.
    """
    lines = text.splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.startswith(ROW_START)]
    if len(rows) != 1:
        raise ConfigError(f"expected one README row starting with {ROW_START!r}, found {len(rows)}")
    ending = "\n" if lines[rows[0]].endswith("\n") else ""
    lines[rows[0]] = readme_row(report) + ending
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_readme", description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="docs/benchmarks/report.json", help="the report's JSON")
    parser.add_argument("--readme", default="README.md", help="the README to update in place")
    args = parser.parse_args(argv)
    report = json.loads(Path(args.report).read_text(encoding="utf-8"))
    readme = Path(args.readme)
    updated = update_readme(readme.read_text(encoding="utf-8"), report)
    readme.write_text(updated, encoding="utf-8")
    print(readme_row(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
