#!/bin/sh
# Streamlit behind jhsingle-native-proxy: streamlit_app.py here, or the script named by APP=...
#
#   sh examples/streamlit.sh                         # then open http://127.0.0.1:8888/
#   JUPYTERHUB_SERVICE_PREFIX=/user/demo/ sh examples/streamlit.sh --port 9000
#                                                    # then http://127.0.0.1:9000/user/demo/
# Arguments go to the proxy (--port, --ip, --debug, ...). Needs: pip install streamlit
#
# The proxy strips the prefix before forwarding, so Streamlit serves at "/" and must NOT get
# --server.baseUrlPath (it would then answer 404 to every request): its page works out the
# prefix from the browser's address by itself. Its page talks to it over a websocket
# (.../_stcore/stream). --browser.gatherUsageStats false: no usage statistics sent out.
#
# Under JupyterHub drop "--authtype none" (the default, oauth, is the hub's login); the hub gives
# the address and prefix. For your own script:
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--", "streamlit", "run", "/srv/app.py",
#                    "--server.port", "{port}", "--server.address", "127.0.0.1",
#                    "--server.headless", "true", "--browser.gatherUsageStats", "false"]
here=$(cd "$(dirname "$0")" && pwd)
app=${APP:-$here/streamlit_app.py}
exec jhsingle-native-proxy --authtype none "$@" -- \
    streamlit run "$app" --server.port {port} --server.address 127.0.0.1 \
    --server.headless true --browser.gatherUsageStats false
