"""A small Streamlit app for streamlit.sh: a button and the count of its clicks.

Each click goes to the server over the page's websocket, the script runs again there, and the
new count comes back the same way.
"""

import streamlit as st

st.title("Streamlit behind jhsingle-native-proxy")

if "clicks" not in st.session_state:
    st.session_state.clicks = 0
if st.button("Click me"):
    st.session_state.clicks += 1

st.write(f"Clicks counted by the server: {st.session_state.clicks}")
