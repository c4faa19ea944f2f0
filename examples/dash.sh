#!/bin/sh
# Dash behind jhsingle-native-proxy: dash_app.py here.
#
#   sh examples/dash.sh                              # then open http://127.0.0.1:8888/
#   JUPYTERHUB_SERVICE_PREFIX=/user/demo/ sh examples/dash.sh --port 9000
#                                                    # then http://127.0.0.1:9000/user/demo/
# Arguments go to the proxy (--port, --ip, --debug, ...). Needs: pip install dash
#
# Dash writes absolute links to its scripts and callbacks: dash_app.py sets
# requests_pathname_prefix to {base_url}/ (what the browser asks for) and keeps
# routes_pathname_prefix at "/" (what the app sees once the proxy strips the prefix).
# Plain HTTP only: no websocket needed.
#
# Under JupyterHub drop "--authtype none":
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--",
#                    "python3", "/srv/dash_app.py", "{port}", "{base_url}/"]
here=$(cd "$(dirname "$0")" && pwd)
exec jhsingle-native-proxy --authtype none "$@" -- \
    python3 "$here/dash_app.py" {port} {base_url}/
