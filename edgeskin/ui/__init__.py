"""The edgeskin Streamlit app (the ``[ui]`` extra: ``pip install 'edgeskin[ui]'``).

Start it with ``edgeskin ui`` and open http://127.0.0.1:8501. Options after ``edgeskin ui`` go to
Streamlit, e.g. ``edgeskin ui --server.port 8502 --server.headless true``. The server listens on
127.0.0.1 only (pass ``--server.address 0.0.0.0`` to serve a network, knowingly), sends no usage
statistics, and stores nothing: uploads and camera photos are decoded in memory and live only in the
browser session.

Raspberry Pi kiosk, the same app full screen on the Pi's display::

    edgeskin ui --server.headless true &
    chromium --kiosk --noerrdialogs --disable-infobars http://127.0.0.1:8501

(as a systemd user service, start the second line after the first answers on
http://127.0.0.1:8501/_stcore/health).

Modules: :mod:`edgeskin.ui.app` is the Streamlit script; :mod:`edgeskin.ui.launch` holds the helpers
that need no Streamlit (command line, analysis, report), so they test quickly.
"""

from __future__ import annotations

from edgeskin.ui.launch import APP_PATH, streamlit_command

__all__ = ["APP_PATH", "streamlit_command"]
