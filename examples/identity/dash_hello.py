"""Dash: "Hello, <viewer>". jhsingle-native-proxy --forward-user-jwt --app dash
--presentation-path dash_hello.py (jhsnp_viewer.py beside it)."""

from dash import Dash, html
from flask import request
from jhsnp_viewer import viewer_from_headers

app = Dash(__name__)


def layout():  # a function: run for each page load, with that request's fresh token
    viewer = viewer_from_headers(request.headers)
    return html.H1(f"Hello, {viewer['name']}" if viewer else "Hello, whoever you are")


app.layout = layout
