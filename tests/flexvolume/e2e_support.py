"""Mounting a FlexVolume through the real shim, for tests outside tests/flexvolume."""

from __future__ import annotations

import uuid
from pathlib import Path

from devstack.harness.attributes import flex_pod_options, go_json
from devstack.harness.daemon import DaemonProcess
from devstack.harness.node import flex_target
from devstack.harness.shim import run_shim
from devstack.harness.world import FLEX_POD


def flex_mount(daemon: DaemonProcess, options: dict[str, str], pod: str = FLEX_POD) -> Path:
    """Mount a seed-world pod-identity volume with `options` through `daemon`'s bridge."""
    uid = str(uuid.uuid4())
    target = flex_target(daemon.root, uid, create=True)
    full = flex_pod_options(daemon.devstack.nmi_port, uid=uid, pod=pod, extra=options)
    result = run_shim(
        ["mount", str(target), go_json(full)],
        socket=daemon.flex_socket,
        log=daemon.root / "flex.log",
    )
    assert result.status == "Success", result.message
    return target
