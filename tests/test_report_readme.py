"""The README's end-to-end row is rewritten from a report.json, and nothing else in the README."""

from __future__ import annotations

import json

import pytest

from benchmarks.report_readme import ROW_START, main, readme_row, update_readme
from edgeskin.errors import ConfigError


def _report(ratio: float = 1.12) -> dict:
    stats = {"p50": 13.04}
    return {
        "device_id": "x86-intel-xeon",
        "machine": {"cpu_model": "Intel(R)  Xeon(R) Processor", "machine": "x86_64"},
        "settings": {"threads": 2},
        "latency": {
            "pipeline-2t": {
                "end_to_end_ms": stats,
                "overhead_ratio": ratio,
                "cam_share_of_classify": 0.0123,
                "stages_ms": {"detect": {"p50": 8.0}, "annotate": {"p50": 1.6}},
            }
        },
        "cam": {"metrics": {"same_class": {"pearson_grid": {"median": 0.9764}}}},
    }


README = f"# x\n\n| a | b | c |\n|---|---|---|\n{ROW_START}, old | old figures | link |\n| other | row | here |\n"


def test_the_row_carries_the_report_figures() -> None:
    row = readme_row(_report())
    assert row.startswith(ROW_START + ", x86 (Intel(R) Xeon(R) Processor), 2 threads |")
    assert "p50 13.0 ms; overhead ratio 1.12; annotate 0.20x detect; CAM 1.2% of classify; " in row
    assert "Pearson 0.976" in row


def test_the_row_names_the_cpus_int8_extensions_when_the_report_has_them() -> None:
    report = _report()
    report["machine"]["cpu_features"] = ["avx2"]
    assert readme_row(report).startswith(ROW_START + ", x86 (Intel(R) Xeon(R) Processor, AVX2), 2 threads |")
    report["machine"]["cpu_features"] = []
    assert "(Intel(R) Xeon(R) Processor, no INT8 extension listed)" in readme_row(report)


def test_only_that_row_changes(tmp_path) -> None:
    updated = update_readme(README, _report(1.3))
    before, after = README.splitlines(), updated.splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [4] and "overhead ratio 1.30" in after[4]
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    assert main(["--report", str(tmp_path / "report.json"), "--readme", str(tmp_path / "README.md")]) == 0
    assert "overhead ratio 1.12" in (tmp_path / "README.md").read_text()


def test_a_readme_without_the_row_or_a_report_without_the_pipeline_is_refused() -> None:
    with pytest.raises(ConfigError, match="found 0"):
        update_readme("# nothing here\n", _report())
    report = _report()
    report["latency"]["pipeline-2t"] = {"missing": "no shipped models"}
    with pytest.raises(ConfigError, match="no shipped models"):
        readme_row(report)
