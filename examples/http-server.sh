#!/bin/sh
# Python's built-in file server behind jhsingle-native-proxy: the current folder, read-only.
#
#   sh examples/http-server.sh                       # then open http://127.0.0.1:8888/
#   JUPYTERHUB_SERVICE_PREFIX=/user/demo/ sh examples/http-server.sh --port 9000
#                                                    # then http://127.0.0.1:9000/user/demo/
# Arguments go to the proxy (--port, --ip, --notebook-dir DIR to serve another folder, ...).
#
# Its listings use relative links, so it needs no prefix setting: the proxy strips the prefix.
#
# Under JupyterHub drop "--authtype none":
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--",
#                    "python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
exec jhsingle-native-proxy --authtype none "$@" -- \
    python3 -m http.server --bind 127.0.0.1 {port}
