"""``edgeskin ui [streamlit options]``: serve the Streamlit app on http://127.0.0.1:8501."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

NAME = "ui"


class _PassThroughParser(argparse.ArgumentParser):
    """Keeps the options it does not know (Streamlit's ``--section.option value``) in ``streamlit_args``
    instead of failing on them, so they can be handed to Streamlit."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.streamlit_args = list(getattr(namespace, "streamlit_args", None) or []) + extras
        return namespace, []


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="serve the web app (Streamlit) on http://127.0.0.1:8501",
        description=(
            "Serve the edgeskin web app: upload images or take a photo, and see the detected lesion, the "
            "class probabilities, the CAM heatmap and model facts. Options are passed to 'streamlit run', "
            "e.g. --server.port 8502 --server.headless true. Defaults: --server.address 127.0.0.1 "
            "--browser.gatherUsageStats false --global.developmentMode false. Needs: pip install 'edgeskin[ui]'."
        ),
        epilog="Raspberry Pi kiosk: edgeskin ui --server.headless true & chromium --kiosk http://127.0.0.1:8501",
        allow_abbrev=False,
    )
    parser.__class__ = _PassThroughParser
    parser.set_defaults(streamlit_args=[])
    parser.add_argument(
        "--print-command", action="store_true", help="print the streamlit command instead of running it"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from edgeskin.errors import require
    from edgeskin.ui.launch import streamlit_command

    require("streamlit", "ui", "edgeskin ui")
    command = streamlit_command(args.streamlit_args)
    if args.print_command:
        print(" ".join(command))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        # Replace this process, so signals (Ctrl-C, systemd, a test's terminate()) reach Streamlit directly.
        os.execv(command[0], command)
    return subprocess.call(command)  # pragma: no cover - Windows
