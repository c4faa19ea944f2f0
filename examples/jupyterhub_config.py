# jupyterhub_config.py: every user's server is a web app behind jhsingle-native-proxy.
#
#   jupyterhub -f examples/jupyterhub_config.py      # then http://127.0.0.1:8000/, any name
#
# For each server it starts, the hub puts in the environment (among others):
#   JUPYTERHUB_SERVICE_URL     where the server must listen, e.g. http://127.0.0.1:54321/user/alice/
#                              (the proxy takes its --ip and --port from it);
#   JUPYTERHUB_SERVICE_PREFIX  the path the server answers under: /user/alice/ for the default
#                              server, /user/alice/dash/ for the named server "dash";
#   JUPYTERHUB_API_URL, JUPYTERHUB_API_TOKEN, JUPYTERHUB_CLIENT_ID, ...  what the proxy's default
#                              --authtype oauth needs to let in only the users the hub allows.
# The proxy strips the prefix before forwarding, so each app serves at "/"; {base_url} hands the
# prefix (without its trailing slash) to the apps that must put it in the links they write.
#
# The spawner appends its own flags (set by c.Spawner.args, debug, notebook_dir, default_url)
# AFTER this command, which after "--" means the app's arguments: leave those unset here, or
# spell the command the 0.8.3 way without "--" (app dashes written {--}), as
# docs/getting-started.md shows.

import os

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

HERE = os.path.dirname(os.path.abspath(__file__))

# Local try-out only: anyone may log in with any name and no password, on this machine alone.
# Use a real authenticator (PAM, OAuthenticator, ...) and spawner for anything else.
c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
# SimpleLocalProcessSpawner runs every server as the hub's own user, in /tmp/<name>.
# With system users, use "localprocess" (LocalProcessSpawner) instead; the rest is the same.
c.JupyterHub.spawner_class = "simple"

STREAMLIT = ["streamlit", "hello", "--server.port", "{port}", "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false"]  # fmt: skip

# The default server, /user/<name>/: Streamlit's demo.
c.Spawner.cmd = ["jhsingle-native-proxy", "--", *STREAMLIT]

# Several apps per user: named servers, one app each, started from the hub's home page
# (or /hub/spawn/<name>/<server>) and served at /user/<name>/<server>/.
c.JupyterHub.allow_named_servers = True

APPS = {
    "streamlit": STREAMLIT,
    "dash": ["python3", os.path.join(HERE, "dash_app.py"), "{port}", "{base_url}/"],
    "files": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
}


def pick_app(spawner):
    """Named server "dash" runs the Dash app, and so on; other names get the default command."""
    app = APPS.get(spawner.name)
    if app is not None:
        spawner.cmd = ["jhsingle-native-proxy", "--", *app]


c.Spawner.pre_spawn_hook = pick_app
