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
# HTTP and server-sent events, which the proxy streams. Nothing calls home: gradio_app.py turns
# off analytics and the version check (GRADIO_ANALYTICS_ENABLED=False, also exported here for
# any Gradio app), Hugging Face telemetry, the share link and server-side rendering; the
# default theme's fonts come from Gradio itself, not a CDN.
#
# Under JupyterHub drop "--authtype none":
#   c.Spawner.cmd = ["jhsingle-native-proxy", "--ready-timeout", "60", "--",
#                    "python3", "/srv/gradio_app.py", "{port}", "{base_url}"]
#   c.Spawner.environment = {"GRADIO_ANALYTICS_ENABLED": "False",
#                            "HF_HUB_DISABLE_TELEMETRY": "1"}
here=$(cd "$(dirname "$0")" && pwd)
export GRADIO_ANALYTICS_ENABLED="${GRADIO_ANALYTICS_ENABLED:-False}"
export HF_HUB_DISABLE_TELEMETRY="${HF_HUB_DISABLE_TELEMETRY:-1}"
exec jhsingle-native-proxy --authtype none --ready-timeout 60 "$@" -- \
    python3 "$here/gradio_app.py" {port} {base_url}
