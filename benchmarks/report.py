"""The benchmark report from the source checkout: the float TFLite companions first, then the report.

``python -m benchmarks.report [--out DIR] [report options]`` runs :mod:`benchmarks.export_float` (it needs
``convert/`` and the ``[train]`` extra, so it lives here, beside the training code) in its own process, then
:func:`edgeskin.report.run.main` (the same report as ``edgeskin bench report``) with that step's result and the
checkout's inputs (:func:`benchmarks.checkout.checkout_inputs`; an input given on the command line wins).

It writes to ``--out`` (default ``artifacts/report``). The committed reference report (``docs/benchmarks``) was
measured on the machine it names: writing there takes ``--reference`` (``make report-reference``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from benchmarks.checkout import REFERENCE_REPORT, REPO, REPORT_DIR, checkout_inputs
from edgeskin.report.common import Missing, ReportInputs, add_input_arguments, models
from edgeskin.report.run import main as report_main

PROG = "python -m benchmarks.report"


def export_float() -> dict:
    """Run ``python -m benchmarks.export_float`` and return its JSON summary (or why it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export_float.json"
        print("  export-float ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.export_float", "--out", str(out)],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0 or not out.is_file():
            lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
            return {
                "missing": f"the export-float job failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
            }
        return json.loads(out.read_text())


def _own_options() -> argparse.ArgumentParser:
    """The options this script reads before handing the rest to the report."""
    parser = argparse.ArgumentParser(prog=PROG, add_help=False)
    parser.add_argument("--out")
    parser.add_argument("--from-json")
    parser.add_argument("--reference", action="store_true")
    add_input_arguments(parser)
    return parser


def report_argv(argv: list[str]) -> list[str]:
    """``argv`` for :func:`edgeskin.report.run.main`: ``--out`` defaulted, every input not given filled in from
    the checkout, ``--reference`` removed.

    Raises:
        SystemExit: ``--out`` is the reference report without ``--reference``, or ``--reference`` names another
            folder (exit 2, one line).
    """
    known, _ = _own_options().parse_known_args(argv)
    out = Path(known.out) if known.out else REPORT_DIR
    refreshing_reference = out.resolve() == REFERENCE_REPORT.resolve()
    if refreshing_reference and not known.reference:
        print(
            f"{PROG}: error: --out: {known.out} is the committed reference report (measured on the machine it names); "
            "write elsewhere (default artifacts/report), or add --reference to replace it (make report-reference)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if known.reference and not refreshing_reference:
        print(f"{PROG}: error: --reference: expected --out {REFERENCE_REPORT.relative_to(REPO)}", file=sys.stderr)
        raise SystemExit(2)
    rest = [arg for arg in argv if arg != "--reference"]
    if not known.out:
        rest = ["--out", str(out), *rest]
    try:
        defaults = checkout_inputs(*models())
    except Missing:
        return rest  # no models: the report says so itself
    for field in fields(ReportInputs):
        if getattr(known, field.name) is None:
            rest += [f"--{field.name.replace('_', '-')}", str(getattr(defaults, field.name))]
    return rest


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        return report_main(args, prog=PROG)
    forwarded = report_argv(args)
    if any(a == "--from-json" or a.startswith("--from-json=") for a in args):
        return report_main(forwarded, prog=PROG, shown_argv=args)
    return report_main(forwarded, prog=PROG, export_float=export_float(), shown_argv=args)


if __name__ == "__main__":
    sys.exit(main())
