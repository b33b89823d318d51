"""The edgeskin app on the fake pipeline of ui_fakes.py (a Streamlit script for the browser tests)."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_fakes import make_fake_pipeline  # noqa: E402

from edgeskin.ui.app import main  # noqa: E402

main(load_pipeline=st.cache_resource(make_fake_pipeline))
