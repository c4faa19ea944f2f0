"""A Flask app written for the root of its server (issue 22): its template writes
`/static/style.css` and `/static/app.js` by hand (no `url_for`), and its script fetches
`/api/data`. Usage: python flask_root_app.py PORT"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flask import Flask, jsonify, render_template_string

app = Flask(
    __name__,
    static_folder=str(Path(__file__).parent / "flask_root_static"),
    static_url_path="/static",
)

PAGE = """<!doctype html>
<html>
<head>
  <title>Flask at the root</title>
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <h1>Flask at the root</h1>
  <p id="data">loading</p>
  <script src="/static/app.js"></script>
</body>
</html>
"""


@app.route("/")
def index():
    return render_template_string(PAGE)


@app.route("/api/data")
def data():
    return jsonify(message="data from Flask")


if __name__ == "__main__":
    if os.environ.get("TEST_PIDFILE"):
        with open(os.environ["TEST_PIDFILE"], "a") as f:
            f.write(f"{os.getpid()}\n")
    app.run(host="127.0.0.1", port=int(sys.argv[1]))
