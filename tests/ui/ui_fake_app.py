"""The edgeskin app on the fake pipeline of ui_fakes.py (a Streamlit script for the browser tests)."""

import streamlit as st
from ui_fakes import make_fake_pipeline  # streamlit puts this script's folder on the path, as python does

from edgeskin.ui.app import main

main(load_pipeline=st.cache_resource(make_fake_pipeline))
