"""``python -m edgeskin`` runs the ``edgeskin`` command."""

import sys

from edgeskin.cli import main

if __name__ == "__main__":
    sys.exit(main())
