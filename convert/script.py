"""How a conversion script ends: an expected failure is one line on stderr and exit 2, like the ``edgeskin`` CLI.

Every ``convert`` script's ``__main__`` calls :func:`run_script`. A missing or unreadable file, a malformed JSON,
an edgeskin error (bad spec, checksum, model) or a refused ship is reported as ``<prog>: error: <what>``; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from convert.ship import ShipError
from edgeskin.errors import EdgeskinError

EXPECTED = (EdgeskinError, ShipError, OSError, json.JSONDecodeError)


def run_script(main: Callable[[], int | None], prog: str) -> None:
    """Run ``main`` and exit with its code; an expected failure (:data:`EXPECTED`) exits 2 with one line."""
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except EXPECTED as exc:
        if os.environ.get("EDGESKIN_TRACEBACK"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code or 0)
