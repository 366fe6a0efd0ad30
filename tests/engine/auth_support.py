"""Helpers shared by the credential tests: volume specs per identity mode, token claims, and
recorders for the metrics callback and the clock."""

from __future__ import annotations

import base64
import json
import socket
import threading
from typing import Any

from devstack.client import Devstack
from driver.model import (
    IdentityMode,
    IdentitySpec,
    ObjectSpec,
    ObjectType,
    PodInfo,
    VolumeSpec,
)

SECRET1 = "testkv-secret1-value"


# --- helpers -----------------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Hooks:
    """Records the metrics callback."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, kind: str, status: str) -> None:
        with self._lock:
            self.calls.append((kind, status))


class Clock:
    """Real time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


def spec_for(
    devstack: Devstack,
    mode: IdentityMode,
    *,
    client_id: str = "",
    pod: PodInfo | None = None,
    nmi_port: int | None = None,
    objects: tuple[str, ...] = ("secret1",),
) -> VolumeSpec:
    return VolumeSpec(
        vault_name="testkv",
        tenant_id=devstack.tenant_id,
        identity=IdentitySpec(
            mode=mode,
            client_id=client_id,
            nmi_port=devstack.nmi_port if nmi_port is None else nmi_port,
        ),
        objects=tuple(ObjectSpec(name, ObjectType.SECRET) for name in objects),
        pod=pod or PodInfo(name="nginx-flex-kv-podid", namespace="default", uid="uid-1"),
    )


def podid_spec(devstack: Devstack, name: str = "nginx-flex-kv-podid", **kw: Any) -> VolumeSpec:
    pod = PodInfo(name=name, namespace=kw.pop("namespace", "default"), uid=f"uid-{name}")
    return spec_for(devstack, IdentityMode.POD_IDENTITY, pod=pod, **kw)


def sp_spec(devstack: Devstack) -> VolumeSpec:
    return spec_for(
        devstack, IdentityMode.SERVICE_PRINCIPAL, client_id=devstack.client_id("kvcreds")
    )


def wi_spec(devstack: Devstack, service_account: str = "workload-sa") -> VolumeSpec:
    pod = PodInfo(name="wi-pod", namespace="default", uid="uid-wi", service_account=service_account)
    return spec_for(
        devstack,
        IdentityMode.WORKLOAD_IDENTITY,
        client_id=devstack.client_id("workload"),
        pod=pod,
    )


def nmi_requests(devstack: Devstack) -> int:
    return devstack.count(operation="nmi")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
