"""Client construction: from a kubeconfig file, or from the pod's service account in-cluster.

The client library is lightkube (see README, "Pod identity (NMI)"): small, typed, msgspec-decoded
objects, generic resources for CRDs without code generation, and a sync client that the
thread-based caches use directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig, SingleConfig

# Requests that are not watches answer quickly or not at all; a watch stream sets its own
# read timeout (none) through lightkube.
DEFAULT_TIMEOUT = 10.0


def load_config(kubeconfig: Path | None = None, context: str | None = None) -> SingleConfig:
    """The kubeconfig file when one is named (or `KUBECONFIG` is set), else the in-cluster one.

    In-cluster means the service-account token, CA and `KUBERNETES_SERVICE_HOST` that kubelet
    gives every pod; a node component such as NMI runs that way from its DaemonSet.
    """
    path = str(kubeconfig) if kubeconfig is not None else os.environ.get("KUBECONFIG")
    if path:
        config = KubeConfig.from_file(path).get(context_name=context)
        where = f"kubeconfig {path}"
    else:
        config = KubeConfig.from_service_account().get()
        where = "the in-cluster service account"
    if config is None:
        raise ValueError(f"no usable context in {where} (context {context or 'current'!r})")
    return config


def make_client(
    config: SingleConfig,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    field_manager: str | None = None,
) -> Client:
    """A sync lightkube client for `config`. Each watch-fed cache makes its own (see cache.py)."""
    return Client(
        config, timeout=httpx2.Timeout(timeout), field_manager=field_manager, trust_env=False
    )
