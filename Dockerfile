# syntax=docker/dockerfile:1
# kv-driver node image: the CSI node plugin (default entrypoint), the azure~kv/kv FlexVolume
# shim and its installer. Build: docker build -t ghcr.io/kv-driver/kv-driver:0.1.0 .
# Health is checked by Kubernetes probes (deploy/), so there is no HEALTHCHECK.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: the project wheel only (its dependencies are all published as wheels) ---------
# The wheel holds the product packages only: the devstack and the code generator are dev tools
# (pyproject.toml's package list), so the build needs none of them.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY driver/ driver/
COPY azcommon/ azcommon/
COPY kube/ kube/
COPY podidentity/ podidentity/
COPY flexvolume/ flexvolume/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime: slim Python, the wheel and its runtime dependencies, nothing to build with ----
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kv-driver" \
      org.opencontainers.image.description="Azure Key Vault volumes for Kubernetes: CSI node plugin kv.csi.azure.com and the azure/kv FlexVolume shim" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/kv-driver/kv-driver"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheel is bind-mounted from the build stage, so it leaves no layer behind. The packaging
# tools go afterwards: the image only runs code. iptables is a runtime need of kv-nmi (the nat
# rules that send pods' 169.254.169.254 traffic to it); nothing to build with is installed.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    apt-get update \
 && apt-get install --yes --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/* \
 && python -m pip install --no-cache-dir /wheels/*.whl \
 && python -m pip uninstall --yes setuptools wheel pip
# The FlexVolume installer DaemonSet runs /opt/kv-driver/flexvolume/install.sh, which copies
# azure~kv/kv (the same files the wheel ships as package data) into kubelet's plugin dir.
COPY --from=build --chmod=0755 /src/flexvolume/install.sh /opt/kv-driver/flexvolume/install.sh
COPY --from=build --chmod=0755 /src/flexvolume/azure~kv/kv /opt/kv-driver/flexvolume/azure~kv/kv
# Root: the node plugin mounts tmpfs into pods' volume directories and writes root-owned files.
USER 0:0
WORKDIR /
ENTRYPOINT ["kv-csi-driver"]
