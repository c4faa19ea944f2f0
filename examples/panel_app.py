"""A small Panel app for panel.sh: a slider and the text it drives."""

import panel as pn

pn.extension()

slider = pn.widgets.IntSlider(name="How many stars?", start=1, end=10, value=3)


def stars(n):
    return "★" * n


pn.Column(
    "# Panel behind jhsingle-native-proxy",
    slider,
    pn.bind(stars, slider),
).servable(title="Panel demo")
