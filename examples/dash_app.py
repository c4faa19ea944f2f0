"""A small Dash app for dash.sh: python3 dash_app.py PORT [PREFIX]

(Or `jhsingle-native-proxy --app dash --presentation-path dash_app.py`: the preset imports this
file, takes `app` and serves it, with the prefix in DASH_REQUESTS_PATHNAME_PREFIX.)

PREFIX is the path the browser sees (JupyterHub's /user/NAME/); dash.sh passes {base_url}/.
jhsingle-native-proxy strips it before forwarding, so the app's routes stay at "/" while the
page asks for its scripts and callbacks under PREFIX.
"""

import sys

from dash import Dash, Input, Output, dcc, html

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8050
# None: Dash reads DASH_REQUESTS_PATHNAME_PREFIX (set by --app dash), else "/".
prefix = sys.argv[2] if len(sys.argv) > 2 else None

app = Dash(__name__, routes_pathname_prefix="/", requests_pathname_prefix=prefix)
app.title = "Dash demo"
app.layout = html.Div(
    [
        html.H1("Dash behind jhsingle-native-proxy"),
        dcc.Input(id="name", value="world", type="text"),
        html.P(id="greeting"),
    ]
)


@app.callback(Output("greeting", "children"), Input("name", "value"))
def greet(name):
    # Runs in the server: the page posts each new value to /_dash-update-component.
    name = name or ""
    return f"Hello, {name}! ({len(name)} characters)"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=port, debug=False)
