"""Streamlit: "Hello, <viewer>". jhsingle-native-proxy --forward-user-jwt --app streamlit
--presentation-path streamlit_hello.py (jhsnp_viewer.py beside it)."""

import streamlit as st
from jhsnp_viewer import viewer_from_headers

# The headers are the session's websocket handshake's, and its token expires in 60 s:
# check it once, when the session starts, and keep the viewer for the session's reruns.
if "viewer" not in st.session_state:
    st.session_state.viewer = viewer_from_headers(st.context.headers)
viewer = st.session_state.viewer
st.title(f"Hello, {viewer['name']}" if viewer else "Hello, whoever you are")
