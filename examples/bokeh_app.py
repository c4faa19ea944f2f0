"""A small Bokeh app for bokeh.sh: a slider whose value the server turns into text.

The text is computed by the Python callback on the server, so it changes only when the
browser's websocket reaches the app and the app's answer comes back.
"""

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Div, Slider

slider = Slider(title="How many stars?", start=1, end=10, value=3, step=1)
text = Div(text="Move the slider.")


def update(attr, old, new):
    text.text = f"The server drew {new} stars: {'★' * new}"


slider.on_change("value", update)

doc = curdoc()
doc.add_root(column(Div(text="<h1>Bokeh behind jhsingle-native-proxy</h1>"), slider, text))
doc.title = "Bokeh demo"
