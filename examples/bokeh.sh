#!/bin/sh
# A Bokeh server app behind jhsingle-native-proxy: bokeh_app.py here, or the app named by
# APP=... (a .py or .ipynb file, or an app directory).
#
#   sh examples/bokeh.sh                             # then open http://127.0.0.1:8888/
#   JUPYTERHUB_SERVICE_PREFIX=/user/demo/ sh examples/bokeh.sh --port 9000
#                                                    # then http://127.0.0.1:9000/user/demo/
# Arguments go to the proxy (--port, --ip, --debug, ...). Needs: pip install bokeh
#
# Unlike Panel, "bokeh serve" writes root-absolute links to BokehJS (/static/js/bokeh.min.js),
# so with the prefix stripped the page comes up blank. Hence the exception here: --absolute-url
# makes the proxy forward the full path, prefix included, and --prefix {base_url} makes Bokeh
# serve its pages, scripts and websocket under that prefix. The prefix itself redirects to
# .../bokeh_app (the app is named after its file). The page finds its websocket from the
# browser's address. The browser's Origin is the hub's host name, unknown in advance, hence
# --allow-websocket-origin='*' (--allow-websocket-origin={origin_host} pins it to the
# server's host instead: the hub's public URL, else --allow-host, else the owner's first visit).
#
# Under JupyterHub drop "--authtype none":
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--absolute-url", "--", "bokeh", "serve",
#                    "/srv/app.py", "--address", "127.0.0.1", "--port", "{port}",
#                    "--prefix", "{base_url}", "--allow-websocket-origin", "*"]
here=$(cd "$(dirname "$0")" && pwd)
app=${APP:-$here/bokeh_app.py}
exec jhsingle-native-proxy --authtype none --absolute-url "$@" -- \
    bokeh serve "$app" --address 127.0.0.1 --port {port} \
    --prefix {base_url} --allow-websocket-origin '*'
