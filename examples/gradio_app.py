"""A small Gradio app for gradio.sh: python3 gradio_app.py PORT [ROOT_PATH]

ROOT_PATH is the path the browser sees, without a trailing slash (/user/NAME under JupyterHub);
gradio.sh passes {base_url}. jhsingle-native-proxy strips it before forwarding, so Gradio serves
at "/" and uses root_path only to build the URLs it hands to the browser.
"""

import sys

import gradio as gr

port = int(sys.argv[1])
root_path = sys.argv[2] if len(sys.argv) > 2 else ""


def greet(name):
    return f"Hello, {name}!"


demo = gr.Interface(fn=greet, inputs="text", outputs="text", title="Gradio demo")

if __name__ == "__main__":
    demo.launch(server_name="127.0.0.1", server_port=port, root_path=root_path)
