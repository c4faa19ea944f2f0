#!/bin/sh
# VS Code in the browser (code-server) behind jhsingle-native-proxy, opening the current folder.
#
#   sh examples/code-server.sh                       # then open http://127.0.0.1:8888/
#   JUPYTERHUB_SERVICE_PREFIX=/user/demo/ sh examples/code-server.sh --port 9000
#                                                    # then http://127.0.0.1:9000/user/demo/
# Arguments go to the proxy (--port, --ip, --notebook-dir DIR, ...).
# Needs code-server on PATH (see https://coder.com/docs/code-server/install).
#
# code-server uses relative links, so it works under a stripped prefix with no setting. Its own
# login is turned off (--auth none): the proxy does the login (JupyterHub's, under a hub). The
# editor talks to its server over websockets.
#
# Under JupyterHub drop "--authtype none":
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--", "code-server", "--auth", "none",
#                    "--bind-addr", "127.0.0.1:{port}", "--disable-telemetry",
#                    "--disable-update-check", "."]
exec jhsingle-native-proxy --authtype none "$@" -- \
    code-server --auth none --bind-addr 127.0.0.1:{port} \
    --disable-telemetry --disable-update-check .
