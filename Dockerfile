# A single-user image for JupyterHub's DockerSpawner and KubeSpawner (ContainDS style): the
# server is jhsingle-native-proxy, in front of a web app. Its CMD runs a small demo app
# (python3 -m http.server and one page) behind JupyterHub's login. docs/container-image.md has
# the rest; in short:
#
#   docker build -t jhsingle-native-proxy .
#   docker build -t my-app --build-arg APP_REQUIREMENTS="streamlit==1.40.2" .   # the app's packages
#
# Try it without a hub (anyone who reaches the port gets in; published on 127.0.0.1 only), then
# open http://127.0.0.1:8888/:
#
#   docker run --rm -p 127.0.0.1:8888:8888 jhsingle-native-proxy \
#       jhsingle-native-proxy --authtype none --ip 0.0.0.0 --allow-host localhost -- \
#       python3 -m http.server --bind 127.0.0.1 --directory /opt/jhsnp-demo {port}
#
# Behind a TLS-inspecting proxy or with a private index, hand pip its settings as build secrets:
# they are mounted for the pip step only, and nothing of them stays in the image. pip.conf names
# the bundle as /run/secrets/ca.crt (cert = /run/secrets/ca.crt); give the host's whole bundle,
# which holds the proxy's CA along with the public ones:
#
#   docker build --secret id=pip.conf,src=pip.conf \
#       --secret id=ca.crt,src=/etc/ssl/certs/ca-certificates.crt -t jhsingle-native-proxy .

FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="jhsingle-native-proxy" \
      org.opencontainers.image.description="A web app behind JupyterHub's login, as a single-user server"

# python3-venv: the proxy and the app's packages live in /opt/venv (pip then needs no
# --break-system-packages); git: for --repo; tini: PID 1, reaps the app's orphans.
# Versions are Debian stable's: it gets only fixes, and pinning exact ones breaks the build as
# soon as the mirror moves on.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git python3 python3-venv tini \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --uid 1000 --gid 100 --no-user-group --create-home --shell /bin/bash jovyan

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1

COPY pyproject.toml README.md LICENSE /tmp/jhsnp-src/
COPY jhsingle_native_proxy /tmp/jhsnp-src/jhsingle_native_proxy

RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=ca.crt \
    PIP_CONFIG_FILE=/run/secrets/pip.conf pip install --no-cache-dir /tmp/jhsnp-src \
    && rm -rf /tmp/jhsnp-src

# The app's own packages: a space-separated pip list, e.g. "streamlit==1.40.2 pandas". A layer
# of their own, so that changing them does not reinstall the proxy; `pip check` fails the build
# if they need versions the proxy cannot run with. Pinning them is the builder's choice (DL3013).
ARG APP_REQUIREMENTS=""
# hadolint ignore=DL3013
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=ca.crt \
    if [ -n "$APP_REQUIREMENTS" ]; then \
        PIP_CONFIG_FILE=/run/secrets/pip.conf pip install --no-cache-dir $APP_REQUIREMENTS \
        && pip check; \
    fi

COPY container/demo /opt/jhsnp-demo

# JupyterHub images run as uid 1000, group 100 (users), as z2jh and the Jupyter docker stacks
# expect. Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 1000
ENV HOME=/home/jovyan
WORKDIR /home/jovyan
EXPOSE 8888

ENTRYPOINT ["tini", "--"]
# JupyterHub mode: the spawner's environment gives the address (JUPYTERHUB_SERVICE_URL), the
# prefix and the OAuth settings. The app listens on 127.0.0.1 only, so that nothing reaches it
# around the proxy's login.
CMD ["jhsingle-native-proxy", "--", \
     "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "/opt/jhsnp-demo", \
     "{port}"]
