"""Dash: "Hello, <viewer>". jhsingle-native-proxy --forward-user-jwt --app dash
--presentation-path dash_hello.py (jhsnp_viewer.py beside it)."""

from dash import Dash, html
from flask import has_request_context, request
from jhsnp_viewer import viewer_from_headers

app = Dash(__name__)


def layout():  # run for each page load, with its fresh token (and once by Dash to check it)
    viewer = viewer_from_headers(request.headers) if has_request_context() else None
    return html.H1(f"Hello, {viewer['name']}" if viewer else "Hello, whoever you are")


app.layout = layout
