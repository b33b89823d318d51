"""The benchmark report from the source checkout: the float TFLite companions first, then the report.

``python -m benchmarks.report [report options]`` runs :mod:`benchmarks.export_float` (it needs ``convert/``
and the ``[train]`` extra, so it lives here, beside the training code) in its own process, then
:func:`edgeskin.report.run.main` (the same report as ``edgeskin bench report``) with that step's result.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeskin.report.common import REPO_ROOT
from edgeskin.report.run import main as report_main


def export_float() -> dict:
    """Run ``python -m benchmarks.export_float`` and return its JSON summary (or why it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export_float.json"
        print("  export-float ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.export_float", "--out", str(out)],
            cwd=REPO_ROOT, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0 or not out.is_file():
            lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
            return {
                "missing": f"the export-float job failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
            }
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "--from-json") or a.startswith("--from-json=") for a in args):
        return report_main(args, prog="python -m benchmarks.report")
    return report_main(args, prog="python -m benchmarks.report", export_float=export_float())


if __name__ == "__main__":
    sys.exit(main())
