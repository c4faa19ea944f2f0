#!/bin/sh
# Panel (on the Bokeh server) behind jhsingle-native-proxy: panel_app.py here, or the app named
# by APP=... (a .py or .ipynb file).
#
#   sh examples/panel.sh                             # then open http://127.0.0.1:8888/
#   JUPYTERHUB_SERVICE_PREFIX=/user/demo/ sh examples/panel.sh --port 9000
#                                                    # then http://127.0.0.1:9000/user/demo/
# Arguments go to the proxy (--port, --ip, --debug, ...). Needs: pip install panel
#
# Panel's pages use relative links and find their websocket from the browser's address, so it
# needs no prefix setting. Do NOT pass --prefix: Bokeh would then expect the prefix in every
# path, and the proxy strips it (404). --index serves the app at the prefix itself rather than
# at .../panel_app. The browser's Origin is the hub's host name, unknown in advance, hence
# --allow-websocket-origin='*'; --allow-websocket-origin={origin_host} pins it to the server's
# host instead: the hub's public URL, else --allow-host, else the owner's first visit (the app
# then starts at that visit).
#
# Under JupyterHub drop "--authtype none":
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--", "panel", "serve", "/srv/app.py",
#                    "--address", "127.0.0.1", "--port", "{port}",
#                    "--allow-websocket-origin", "*", "--index", "app"]
here=$(cd "$(dirname "$0")" && pwd)
app=${APP:-$here/panel_app.py}
name=$(basename "$app"); name=${name%.*}
exec jhsingle-native-proxy --authtype none "$@" -- \
    panel serve "$app" --address 127.0.0.1 --port {port} \
    --allow-websocket-origin '*' --index "$name"
