#!/bin/sh
# Gradio behind jhsingle-native-proxy: gradio_app.py here.
#
#   sh examples/gradio.sh                            # then open http://127.0.0.1:8888/
#   JUPYTERHUB_SERVICE_PREFIX=/user/demo/ sh examples/gradio.sh --port 9000
#                                                    # then http://127.0.0.1:9000/user/demo/
# Arguments go to the proxy (--port, --ip, --debug, ...). Needs: pip install gradio
#
# gradio_app.py passes {base_url} to launch(root_path=...): Gradio keeps serving at "/" (the
# proxy strips the prefix) and puts the prefix in the URLs it gives the page. Its queue uses
# HTTP and server-sent events, which the proxy streams. GRADIO_ANALYTICS_ENABLED=False keeps
# it from calling home.
#
# Under JupyterHub drop "--authtype none":
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--",
#                    "python3", "/srv/gradio_app.py", "{port}", "{base_url}"]
#   c.Spawner.environment = {"GRADIO_ANALYTICS_ENABLED": "False"}
here=$(cd "$(dirname "$0")" && pwd)
export GRADIO_ANALYTICS_ENABLED="${GRADIO_ANALYTICS_ENABLED:-False}"
exec jhsingle-native-proxy --authtype none --ready-timeout 60 "$@" -- \
    python3 "$here/gradio_app.py" {port} {base_url}
