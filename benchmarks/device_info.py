"""This machine as the benchmarks see it: device id, CPU, cores, governor (with its warning), interpreter.

``python -m benchmarks.device_info [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys

from edgeskin.bench import cpu_governor, device_id, governor_warning, machine_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    info = {"device_id": device_id(), **machine_info()}
    warning = governor_warning(cpu_governor())
    info["warnings"] = [warning] if warning else []
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for key, value in info.items():
        if key != "warnings":
            print(f"{key:>16}: {value}")
    for line in info["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
