"""Panel (or Bokeh, with curdoc().session_context): "Hello, <viewer>".
jhsingle-native-proxy --forward-user-jwt --app panel --presentation-path panel_hello.py
(jhsnp_viewer.py beside it)."""

import panel as pn
from jhsnp_viewer import viewer_from_headers

# The page's request, which made this session: its token is checked as the session starts.
viewer = viewer_from_headers(pn.state.curdoc.session_context.request.headers)
greeting = f"Hello, {viewer['name']}" if viewer else "Hello, whoever you are"
pn.pane.Markdown(f"# {greeting}").servable()
