"""A plugin in jupyter-server-proxy's format: the entry point returns a server description."""

import sys


def setup_server():
    def command(port):
        return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]

    return {
        "command": command,
        "environment": {"PLUGIN_BASE": "{base_url}"},
        "timeout": 20,
        "launcher_entry": {"title": "Test plugin"},
        "new_browser_tab": False,
    }
