"""A small Gradio app for gradio.sh: python3 gradio_app.py PORT [ROOT_PATH]

ROOT_PATH is the path the browser sees, without a trailing slash (/user/NAME under JupyterHub);
gradio.sh passes {base_url}. jhsingle-native-proxy strips it before forwarding, so Gradio serves
at "/" and uses root_path only to build the URLs it hands to the browser. (Or
`jhsingle-native-proxy --app gradio --presentation-path gradio_app.py`: the preset imports this
file and launches `demo` itself.)

Nothing here calls the internet: no analytics or version check (GRADIO_ANALYTICS_ENABLED=False,
analytics_enabled=False), no Hugging Face telemetry, no share link (share=False, so no frpc
download), no server-side rendering by Node (ssr_mode=False); the default theme's fonts are
served by Gradio itself. flagging_mode="never": no Flag button writing to .gradio/ here.
"""

import os
import sys

# Before gradio is imported: it reads these when it loads.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

port = int(sys.argv[1]) if len(sys.argv) > 1 else 7860
root_path = sys.argv[2] if len(sys.argv) > 2 else ""


def greet(name):
    # Runs in the server: the name comes through Gradio's queue (HTTP and server-sent events).
    name = name or ""
    return f"Hello, {name}! ({len(name)} characters)"


demo = gr.Interface(
    fn=greet,
    inputs=gr.Textbox(label="Name"),
    outputs=gr.Textbox(label="Greeting"),
    title="Gradio demo",
    analytics_enabled=False,
    flagging_mode="never",
)

if __name__ == "__main__":
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        root_path=root_path,
        share=False,
        ssr_mode=False,
        mcp_server=False,
    )
