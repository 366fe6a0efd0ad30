"""Pod identity tests share the API-server-only fixture of the Kubernetes access layer."""

from tests.kube.conftest import apiserver

__all__ = ["apiserver"]
