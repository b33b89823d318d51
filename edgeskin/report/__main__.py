"""``python -m edgeskin.report``: the benchmark report (same as ``edgeskin bench report``)."""

import sys

from edgeskin.report.run import main

sys.exit(main())
