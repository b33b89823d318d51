"""A benchmark report's header (``edgeskin.report``'s report.json top level) for tests of the report's pure parts."""

from __future__ import annotations

from typing import Any

REPORT_COMMAND = "python -m benchmarks.report --out docs/benchmarks --threads 2"


def report_header(date: str, device_id: str, cpu_model: str, command: str = REPORT_COMMAND) -> dict[str, Any]:
    """When, where and how a fake report was measured (2 threads, 100 runs, LiteRT 2.3.0): what every page starts from."""
    return {
        "date": date,
        "device_id": device_id,
        "machine": {"cpu_model": cpu_model, "cores": 2, "interpreter": {"package": "litert", "version": "2.3.0"}},
        "settings": {
            "threads": 2,
            "runs": 100,
            "full": False,
            "cam_images": 300,
            "keras_backend": "tensorflow",
            "command": command,
        },
    }
