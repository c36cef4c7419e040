# The zero-to-jupyterhub hub image with gpuspawner installed; build from the repository root:
#   pip wheel --no-deps -w deploy/wheelhouse .
#   docker build -f deploy/hub.Dockerfile --build-arg K8S_HUB=quay.io/jupyterhub/k8s-hub:<tag> \
#     -t registry.example.org/gpuspawner-hub:0.1.0 .
# K8S_HUB: the hub image of the chart release you deploy; it must ship JupyterHub 6.
ARG K8S_HUB
FROM ${K8S_HUB}
USER root
COPY deploy/wheelhouse/ /tmp/wheelhouse/
RUN python3 -m pip install --no-cache-dir --find-links /tmp/wheelhouse "gpuspawner[kubernetes]" \
    && rm -rf /tmp/wheelhouse
USER 1000
