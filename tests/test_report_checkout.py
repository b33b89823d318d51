"""``make report`` (python -m benchmarks.report): a folder of its own by default, the committed reference report only
when asked, and the checkout's inputs filled in where the command line gives none."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import report as checkout_report
from benchmarks.checkout import REFERENCE_REPORT, REPO, REPORT_DIR


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_the_default_folder_is_not_the_reference_report():
    argv = checkout_report.report_argv(["--threads", "2"])
    assert Path(_option(argv, "--out")) == REPORT_DIR
    assert REPORT_DIR.relative_to(REPO).parts[0] == "artifacts"  # ignored by git: a fresh clone stays clean


@pytest.mark.parametrize("spelling", [str(REFERENCE_REPORT), "docs/benchmarks", "docs/../docs/benchmarks/"])
def test_the_reference_report_is_refused_without_reference(spelling, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exc:
        checkout_report.report_argv(["--out", spelling])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reference" in err[0] and "committed reference report" in err[0]


def test_reference_refreshes_it_and_only_it(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = checkout_report.report_argv(["--out", "docs/benchmarks", "--reference"])
    assert _option(argv, "--out") == "docs/benchmarks" and "--reference" not in argv
    with pytest.raises(SystemExit):
        checkout_report.report_argv(["--out", "elsewhere", "--reference"])
    assert "expected --out docs/benchmarks" in capsys.readouterr().err


def test_the_checkouts_inputs_fill_in_what_the_command_line_does_not_give(tmp_path):
    argv = checkout_report.report_argv(["--out", str(tmp_path), "--data", str(tmp_path / "mine")])
    assert argv.count("--data") == 1 and _option(argv, "--data") == str(tmp_path / "mine")
    assert Path(_option(argv, "--reference-dir")) == REPO / "benchmarks" / "reference"
    assert Path(_option(argv, "--detector-split")).name == "ph2_split.json"
    assert Path(_option(argv, "--work")).is_relative_to(REPO / "artifacts")


def test_the_report_records_the_command_as_typed_not_the_filled_in_one(tmp_path, monkeypatch):
    seen = {}

    def fake_main(argv, prog, export_float=None, shown_argv=None):
        seen.update(argv=argv, shown=shown_argv)
        return 0

    monkeypatch.setattr(checkout_report, "report_main", fake_main)
    typed = ["--from-json", str(tmp_path / "r.json"), "--out", str(tmp_path)]
    assert checkout_report.main(typed) == 0
    assert seen["shown"] == typed and "--data" in seen["argv"]
