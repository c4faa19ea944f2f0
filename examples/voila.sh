#!/bin/sh
# Voilà behind jhsingle-native-proxy: a notebook as a web page (voila_app.ipynb here, or the
# notebook named by NOTEBOOK=...).
#
#   sh examples/voila.sh                             # then open http://127.0.0.1:8888/
#   JUPYTERHUB_SERVICE_PREFIX=/user/demo/ sh examples/voila.sh --port 9000
#                                                    # then http://127.0.0.1:9000/user/demo/
# Arguments go to the proxy (--port, --ip, --debug, ...). Needs: pip install voila ipykernel
#
# Voilà writes absolute links, so it must know the prefix: --Voila.base_url={base_url}/ is what
# the page links to, while --Voila.server_url=/ keeps its routes at "/", where the proxy, which
# strips the prefix, sends them. Widgets talk to their kernel over a websocket
# ({base_url}/api/kernels/ID/channels, which the proxy forwards as /api/kernels/ID/channels).
#
# --ready-check-path: the proxy's readiness probe asks a static file of Voilà's. At "/" every GET
# runs the notebook in a new kernel, so probing "/" would leave one idle kernel behind per start.
# Voilà's page templates link Font Awesome's stylesheets from cdn.jsdelivr.net (widget icons);
# without the internet only those icons are missing.
#
# Under JupyterHub drop "--authtype none":
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--ready-check-path", "/voila/static/voila.js",
#                    "--", "voila", "/srv/dashboard.ipynb",
#                    "--port={port}", "--no-browser", "--Voila.ip=127.0.0.1",
#                    "--Voila.base_url={base_url}/", "--Voila.server_url=/"]
here=$(cd "$(dirname "$0")" && pwd)
exec jhsingle-native-proxy --authtype none --ready-check-path /voila/static/voila.js "$@" -- \
    voila "${NOTEBOOK:-$here/voila_app.ipynb}" --port={port} --no-browser \
    --Voila.ip=127.0.0.1 --Voila.base_url={base_url}/ --Voila.server_url=/
