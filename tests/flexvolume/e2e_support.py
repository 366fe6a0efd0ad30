"""Mounting a FlexVolume through the real shim, for tests outside tests/flexvolume."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.flexvolume.kubelet import go_json
from tests.flexvolume.shimrun import run_shim

TENANT = "11111111-1111-1111-1111-111111111111"


def flex_mount(daemon: Any, options: dict[str, str], pod: str = "nginx-flex-kv-podid") -> Path:
    uid = str(uuid.uuid4())
    target = daemon.root / "pods" / uid / "volumes" / "azure~kv" / "kv"
    target.mkdir(parents=True)
    full = {
        "usepodidentity": "true",
        "nmiport": str(daemon.devstack.nmi_port),
        "keyvaultname": "testkv",
        "tenantid": TENANT,
        "kubernetes.io/pod.name": pod,
        "kubernetes.io/pod.namespace": "default",
        "kubernetes.io/pod.uid": uid,
        **options,
    }
    result = run_shim(
        ["mount", str(target), go_json(full)],
        socket=daemon.flex_socket,
        log=daemon.root / "flex.log",
    )
    assert result.status == "Success", result.message
    return target
